"""Full-ranking evaluation at scale: 1M users × 100k items in bounded memory.

    python -m benchmarks.large_eval [--users 1000000 --items 100000 --dim 32 --exclude 20]

Scores come from random low-rank factors (users × dim, items × dim), computed batch by batch
inside the scorer, so no users × items matrix ever exists: `evaluate` asks for `batch_size`
rows at a time (~256 MB of float32 scores), masks each user's ~20 excluded items and ranks one
target against the other ~100k. The target is the best-scoring of 100 random items, so the
metrics are well above chance and checkable. With `--users` below the full size, the
1M-user time is extrapolated from the measured rate and labelled as such.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.common import append_record, environment, peak_rss_bytes
from playnext.data.interactions import Histories
from playnext.data.split import EvalSet
from playnext.evaluate.protocol import Scorer, evaluate


def factor_eval_set(
    n_users: int, n_items: int, dim: int, n_exclude: float, seed: int
) -> tuple[EvalSet, Scorer]:
    """Random factors, one planted target per user and ~n_exclude excluded items; and its scorer."""
    rng = np.random.default_rng(seed)
    users = rng.standard_normal((n_users, dim), dtype=np.float32)
    items = rng.standard_normal((n_items, dim), dtype=np.float32) / np.float32(np.sqrt(dim))
    targets = np.empty(n_users, dtype=np.int32)
    for s in range(0, n_users, 4096):  # best of 100 random items, 4096 users at a time (50 MB)
        u = users[s : s + 4096]
        pool = rng.integers(0, n_items, (len(u), 100))
        best = np.einsum("bd,bkd->bk", u, items[pool]).argmax(1)
        targets[s : s + len(u)] = pool[np.arange(len(u)), best]
    lengths = np.clip(rng.poisson(n_exclude, n_users), 0, n_items - 1)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    excluded = rng.integers(0, n_items, int(indptr[-1]), dtype=np.int32)
    owner = np.repeat(targets, lengths)
    excluded[excluded == owner] = (excluded[excluded == owner] + 1) % n_items  # never the target
    seen = Histories(indptr, excluded)
    data = EvalSet(np.arange(n_users), seen, Histories(np.arange(n_users + 1), targets), seen)
    user_t, item_t = torch.from_numpy(users), torch.from_numpy(items)

    def scorer(batch_users: np.ndarray, _history: Histories) -> torch.Tensor:
        return user_t[torch.from_numpy(batch_users)] @ item_t.T  # (B, n_items)

    return data, scorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--exclude", type=float, default=20.0, help="mean excluded items per user")
    ap.add_argument("--batch-size", type=int, default=None, help="default: evaluate's (~256 MB of scores)")
    ap.add_argument("--full-users", type=int, default=1_000_000, help="the size to extrapolate to")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="large_eval")
    args = ap.parse_args()
    t0 = time.perf_counter()
    data, scorer = factor_eval_set(args.users, args.items, args.dim, args.exclude, args.seed)
    setup = time.perf_counter() - t0
    rss_setup = peak_rss_bytes()
    done = [0, time.perf_counter()]

    def progress(n: int) -> None:
        done[0] += n
        if done[0] // 50_000 != (done[0] - n) // 50_000:
            rate = done[0] / (time.perf_counter() - done[1])
            print(
                f"{done[0]:,} users, {rate:,.0f} users/s, peak RSS {peak_rss_bytes() / 2**30:.2f} GiB",
                flush=True,
            )

    result = evaluate(scorer, data, args.items, batch_size=args.batch_size, progress=progress)
    rate = result.n_users / result.seconds
    peak = peak_rss_bytes()
    full_seconds = args.full_users / rate
    print(
        f"{result.n_users:,} users × {args.items:,} items: {result.seconds:.1f}s, {rate:,.0f} users/s, "
        f"peak RSS {peak / 2**30:.2f} GiB (after setup {rss_setup / 2**30:.2f}); "
        f"HR@10 {result.metrics['HR@10']:.4f}, NDCG@10 {result.metrics['NDCG@10']:.4f}"
    )
    if args.users < args.full_users:
        print(
            f"EXTRAPOLATED, not measured: {args.full_users:,} users would take ~{full_seconds / 60:.1f} min"
        )
    append_record(
        "large_eval",
        {
            "model": "low-rank-random",
            "dataset": f"{args.users}x{args.items}",
            "seed": args.seed,
            "tag": args.tag,
            "metrics": {
                **result.metrics,
                "users_per_second": rate,
                "seconds": result.seconds,
                "peak_rss_bytes": peak,
            },
            "params": {**vars(args), "setup_seconds": setup, "peak_rss_after_setup_bytes": rss_setup},
            "train_seconds": 0.0,
            "users_evaluated": result.n_users,
            "users_per_second": rate,
            "peak_rss_bytes": peak,
            "extrapolated": (
                {
                    "users": args.full_users,
                    "seconds": full_seconds,
                    "note": "extrapolated from the measured rate",
                }
                if args.users < args.full_users
                else None
            ),
            "environment": environment(),
        },
    )


if __name__ == "__main__":
    main()
