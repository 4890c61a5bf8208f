"""What bf16 autocast, length-bucketed batches and longest-first scoring buy on a CPU.

    python -m benchmarks.train_speed --dataset ml-1m \\
        [--models hstu] [--set dim=64] [--buckets 16]

Each model trains its benchmark recipe (its default recipe, `playnext recipes`) for 2 epochs in four variants,
fp32 / bf16 × shuffled / length-bucketed batches; the second epoch is timed, so one-time costs
(kernel creation for each new shape) stay out. Then the last variant's model scores the
validation users, longest-first chunks against chunks in the users' own order. Speed-ups
are ratios to fp32 + shuffled batches measured in the same run. Records go to
results/train_speed.json; quality is not measured here (benchmarks.deep does that).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from benchmarks.common import append_record, environment, peak_rss_bytes
from benchmarks.deep import load, parse_overrides
from playnext import recipes
from playnext.data.split import EvalSet, leave_one_out
from playnext.models.nn import NeuralRecommender
from playnext.models.registry import create
from playnext.train import batches as B


@contextmanager
def unsorted_scoring() -> Iterator[None]:
    """Chunks in the rows' own order: how scoring ran before longest-first chunks."""
    sort = B.longest_first
    B.longest_first = lambda history, max_len: np.arange(len(history))
    try:
        yield
    finally:
        B.longest_first = sort


def time_scoring(model: NeuralRecommender, valid: EvalSet) -> float:
    t0 = time.perf_counter()
    model.score(valid.users, valid.history)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--path", default=None, help="default: $PLAYNEXT_DATA_DIR/<dataset folder>")
    ap.add_argument("--models", default="hstu")
    ap.add_argument("--buckets", type=int, default=16, help="batches per sorted pool")
    ap.add_argument("--set", action="append", default=[], metavar="[MODEL.]KEY=VALUE")
    args = ap.parse_args()
    split = leave_one_out(load(args.dataset, args.path))
    for name in args.models.split(","):
        recipe: dict[str, Any] = {**recipes.default_for(name).params, **parse_overrides(args.set, name)}
        recipe.update(epochs=2, max_minutes=0.0, patience=0, verbose=False, warmup_epochs=0.0)
        base = None
        model: NeuralRecommender | None = None
        for amp in ("off", "bf16"):
            for buckets in (0, args.buckets):
                params = {**recipe, "amp": amp, "length_buckets": buckets}
                t0 = time.perf_counter()
                fitted = create(name, **params).fit(split.train)
                assert isinstance(fitted, NeuralRecommender) and fitted.report_ is not None
                model = fitted
                seconds = model.report_.history[-1]["seconds"]
                base = base or seconds
                speed = f"{seconds:.1f} s/epoch, {base / seconds:.2f}×"
                print(f"{name} amp={amp} length_buckets={buckets}: {speed}")
                append_record(
                    "train_speed",
                    {
                        "model": name,
                        "dataset": args.dataset,
                        "seed": 0,
                        "tag": f"train_speed-{amp}-lb{buckets}",
                        "metrics": {
                            "seconds_per_epoch": seconds,
                            "samples_per_s": model.report_.history[-1]["samples_per_s"],
                            "speedup": base / seconds,
                        },
                        "params": params,
                        "train_seconds": time.perf_counter() - t0,
                        "peak_rss_bytes": peak_rss_bytes(),
                        "load_average": os.getloadavg()[0],
                        "environment": environment(),
                    },
                )
        assert model is not None
        model.net_.eval()
        with unsorted_scoring():
            plain = time_scoring(model, split.valid)
        sorted_ = time_scoring(model, split.valid)
        users = len(split.valid)
        print(f"{name} scoring {users} users: {plain:.1f} s unsorted, {sorted_:.1f} s longest first")
        append_record(
            "train_speed",
            {
                "model": name,
                "dataset": args.dataset,
                "seed": 0,
                "tag": "score_speed",
                "metrics": {
                    "seconds_unsorted": plain,
                    "seconds_longest_first": sorted_,
                    "speedup": plain / sorted_,
                },
                "params": {**recipe, "users": users},
                "train_seconds": 0.0,
                "load_average": os.getloadavg()[0],
                "environment": environment(),
            },
        )


if __name__ == "__main__":
    main()
