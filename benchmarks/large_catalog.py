"""A 10M-item catalog trained and evaluated on one machine: sparse item table, full ranking.

    python -m benchmarks.large_catalog [--items 10000000 --users 500000 --length 40 --minutes 6]

The log has planted, learnable structure at catalog scale. Items fall into `--genres` genres of
equal size. Each user belongs to one genre: first come 20 of the genre's items dealt out so
that every one of the 10M items is interacted with (the catalog is all of them), then a walk of
20 steps along the genre's `--head` chain (item k followed by k + 1). The held-out items are the
walk's last two, so they follow from the history, while popularity is flat over 200k head
items: a model that learns the transitions beats popularity by a wide margin.

SASRec trains with `sparse_embeddings=True` (sparse gradients + SparseAdam for the item table,
dense Adam for the rest) and sampled softmax; a few steps with a *dense* table and Adam are timed
in the same run for the ratio. Test is leave-one-out, full ranking over every item with seen
items excluded, on a random sample of `--eval-users` users (ranking 10M items per user is the
cost; the sample size is recorded). Writes benchmarks/results/large_catalog.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl
import torch

from benchmarks.common import append_record, environment, peak_rss_bytes
from playnext.data.interactions import IdMap, Interactions
from playnext.data.split import leave_one_out
from playnext.evaluate.protocol import evaluate, model_scorer
from playnext.models.registry import create


def genre_log(n_users: int, n_items: int, n_genres: int, length: int, head: int, seed: int) -> pl.DataFrame:
    """user, item, timestamp columns, int64, built in numpy without per-row Python objects."""
    rng = np.random.default_rng(seed)
    if n_users % n_genres or n_items % n_genres:
        raise SystemExit("--users and --items must be multiples of --genres")
    per_genre, users_per_genre = n_items // n_genres, n_users // n_genres
    walk = length // 2
    slots = users_per_genre * (length - walk)
    if slots < per_genre - head or head >= per_genre:
        raise SystemExit("too few users × length to deal every item of a genre once")
    genre = np.arange(n_users) % n_genres  # (U,)
    # first the genre's tail items, dealt round its users so every item occurs at least once
    tail = np.empty((n_users, length - walk), dtype=np.int64)
    for g in range(n_genres):
        deal = rng.permutation(
            np.concatenate(
                [np.arange(head, per_genre), rng.integers(head, per_genre, slots - per_genre + head)]
            )
        )
        tail[g::n_genres] = deal.reshape(users_per_genre, length - walk) + g * per_genre
    # then a walk along the genre's head chain (item k is followed by k + 1): the planted signal
    start = rng.integers(0, head, n_users)
    chain = genre[:, None] * per_genre + (start[:, None] + np.arange(walk)[None, :]) % head  # (U, walk)
    items = np.concatenate([tail, chain], axis=1)  # (U, L) in time order
    return pl.DataFrame(
        {
            "user": np.repeat(np.arange(n_users, dtype=np.int64), length),
            "item": items.reshape(-1),
            "timestamp": np.tile(np.arange(length, dtype=np.int64), n_users),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=10_000_000)
    ap.add_argument("--users", type=int, default=500_000)
    ap.add_argument("--genres", type=int, default=1000)
    ap.add_argument("--length", type=int, default=40)
    ap.add_argument("--head", type=int, default=200, help="items per genre on the planted chain")
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--negatives", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-2, help="a table row moves only when a batch touches it")
    ap.add_argument("--minutes", type=float, default=6.0, help="training budget (the schedule ends with it)")
    ap.add_argument("--eval-users", type=int, default=2000)
    ap.add_argument("--dense-steps", type=int, default=5, help="steps timed with a dense table (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="large_catalog")
    args = ap.parse_args()
    t0 = time.perf_counter()
    raw = genre_log(args.users, args.items, args.genres, args.length, args.head, args.seed)
    catalog = IdMap(pl.arange(0, args.items, eager=True))
    data = Interactions.from_frame(raw, items=catalog, name=f"genres-{args.items}")
    del raw
    split = leave_one_out(data)
    setup = time.perf_counter() - t0
    print(
        f"{data.n_users:,} users, {data.n_items:,} items, {len(data):,} interactions; "
        f"setup {setup:.0f}s, peak RSS {peak_rss_bytes() / 2**30:.2f} GiB",
        flush=True,
    )
    cfg = {
        "dim": args.dim,
        "max_len": 50,
        "n_blocks": 2,
        "dropout": 0.1,
        "loss": "sampled_softmax",
        "n_negatives": args.negatives,
        "sparse_embeddings": True,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "epochs": 100,
        "warmup_epochs": 0.05,
        "patience": 0,
        "max_minutes": args.minutes,
        "seed": args.seed,
        "verbose": True,
    }
    dense_step = time_dense_steps(split.train, cfg, args.dense_steps) if args.dense_steps else None
    model = create("sasrec", **cfg)
    t1 = time.perf_counter()
    model.fit(split.train, None)  # no validation pass: ranking 10M items is the expensive part
    train_seconds = time.perf_counter() - t1
    report = model.report_
    rows = np.random.default_rng(args.seed).choice(len(split.test), args.eval_users, replace=False)
    test = split.test.take(np.sort(rows))
    res = evaluate(model_scorer(model), test, data.n_items)
    pop = create("popular").fit(split.train)
    pop_res = evaluate(model_scorer(pop), test, data.n_items)
    peak = peak_rss_bytes()
    samples = sum(h["samples_per_s"] * h["seconds"] for h in report.history) if report else 0.0
    sparse_step = train_seconds / max(1.0, samples / args.batch_size)
    print(
        f"sasrec (sparse table): test NDCG@10 {res.metrics['NDCG@10']:.4f} HR@10 {res.metrics['HR@10']:.4f} "
        f"vs popularity {pop_res.metrics['NDCG@10']:.4f} / {pop_res.metrics['HR@10']:.4f}; "
        f"train {train_seconds / 60:.1f} min ({report.epochs if report else 0} epochs), "
        f"{sparse_step:.3f} s/step sparse"
        + (f" vs {dense_step:.3f} s/step dense" if dense_step else "")
        + f"; eval {res.n_users / res.seconds:.1f} users/s; peak RSS {peak / 2**30:.2f} GiB",
        flush=True,
    )
    append_record(
        "large_catalog",
        {
            "model": "sasrec",
            "dataset": f"genres-{args.items}",
            "seed": args.seed,
            "tag": args.tag,
            "metrics": res.metrics,
            "popular_metrics": pop_res.metrics,
            "params": {**cfg, **{f"bench_{k}": v for k, v in vars(args).items()}},
            "n_params": int(model.n_params()),
            "n_items": data.n_items,
            "n_users": data.n_users,
            "interactions": len(data),
            "train_seconds": train_seconds,
            "epochs": report.epochs if report else None,
            "history": report.history if report else None,
            "seconds_per_step_sparse": sparse_step,
            "seconds_per_step_dense": dense_step,
            "eval_users": res.n_users,
            "eval_seconds": res.seconds,
            "eval_users_per_second": res.n_users / res.seconds,
            "setup_seconds": setup,
            "peak_rss_bytes": peak,
            "protocol": "leave-one-out, full ranking over every catalog item, seen excluded, expected ties; "
            f"test on {res.n_users} sampled users",
            "environment": environment(),
        },
    )


def time_dense_steps(train: Interactions, cfg: dict[str, object], n_steps: int) -> float:
    """Seconds per step with a dense item table and dense Adam (same model, same batches)."""
    model = create("sasrec", **{**cfg, "sparse_embeddings": False, "verbose": False})
    model._prepare(train)
    model.n_items_ = train.n_items
    model.n_users_ = train.n_users
    net = model._build()
    model.net_ = net
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    batches = model.train_batches(np.random.default_rng(0), int(cfg["batch_size"]), 0, 1)  # type: ignore[call-overload]
    times = []
    for _, batch in zip(range(n_steps + 1), batches, strict=False):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model.train_loss(batch).backward()
        opt.step()
        times.append(time.perf_counter() - t)
    model._release()
    del net, opt
    return float(np.median(times[1:])) if len(times) > 1 else float("nan")


if __name__ == "__main__":
    main()
