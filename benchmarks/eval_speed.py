"""How long full-ranking evaluation takes *given the scores* (ML-1M shape by default).

    python -m benchmarks.eval_speed [--users 6040 --items 3706 --history 165]

Scores are random; each user gets a random history to exclude and one target, so the work is
exactly what `evaluate` does for ML-1M leave-one-out (mask, rank, top-K for coverage).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from benchmarks.common import append_record, environment
from playnext.data.interactions import Histories
from playnext.data.split import EvalSet
from playnext.evaluate.protocol import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=6040)
    ap.add_argument("--items", type=int, default=3706)
    ap.add_argument("--history", type=int, default=165, help="mean excluded items per user (ML-1M: 165)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.poisson(args.history, args.users), 1, args.items - 1)
    hist = Histories.from_lists([rng.choice(args.items, n, replace=False) for n in lengths])
    targets = Histories(np.arange(args.users + 1), rng.integers(0, args.items, args.users))
    data = EvalSet(np.arange(args.users), hist, targets, hist)
    scores = torch.rand(args.users, args.items)

    def scorer(users: np.ndarray, _: Histories) -> torch.Tensor:
        return scores[torch.from_numpy(users)]

    times, cpu = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        evaluate(scorer, data, args.items, item_counts=np.ones(args.items))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    best, median = min(times), float(np.median(times))
    load = os.getloadavg()[0]
    print(
        f"{args.users} users × {args.items} items: best {best:.3f}s, median {median:.3f}s wall, "
        f"{min(cpu):.3f}s CPU (load average {load:.1f} on {os.cpu_count()} cores)"
    )
    append_record(
        "eval_speed",
        {
            "model": "random-scores",
            "dataset": f"{args.users}x{args.items}",
            "seed": 0,
            "tag": "eval_speed",
            "metrics": {
                "seconds_best": best,
                "seconds_median": median,
                "cpu_seconds_best": min(cpu),
                "users_per_second": args.users / median,
                "load_average": load,
            },
            "params": vars(args),
            "train_seconds": 0.0,
            "environment": environment(),
        },
    )


if __name__ == "__main__":
    main()
