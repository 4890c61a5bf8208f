"""Incremental inference: milliseconds per request with and without the KV cache.

    python -m benchmarks.incremental [--lengths 50,200,1000] [--requests 30] [--dim 64 --blocks 2]

A request = one new event appended to a user's history, answered with scores over the catalog.
*Uncached* runs `model.score` on the whole history (the public path); *cached* runs
`IncrementalScorer.append`, i.e. the network's own `step` (one position through its blocks
against the cached keys/values). For SASRec the cache must be prefilled again after every event
(absolute positions shift: `KVCache.extendable` is False), which a server does off the request
path: reported separately as `refresh_ms`, and `cached_inline_ms` is request + refresh. Models
are built at the given size with random weights over an ML-1M-sized catalog (timing does not
depend on training) and `max_len` = the longest history, so nothing is cropped. Median over
`--requests` requests per point; results to benchmarks/results/incremental.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.common import append_record, environment, median_ms
from playnext.data.interactions import Histories
from playnext.models.hstu import HSTU, HSTUConfig
from playnext.models.sasrec import SASRec, SASRecConfig
from playnext.serve.full_pass import full_scores
from playnext.serve.incremental import IncrementalScorer


def build(name: str, n_items: int, dim: int, blocks: int, heads: int, max_len: int) -> SASRec | HSTU:
    torch.manual_seed(0)
    cfg = {"dim": dim, "n_blocks": blocks, "n_heads": heads, "max_len": max_len, "device": "cpu"}
    model: SASRec | HSTU = (
        SASRec(SASRecConfig.from_dict(cfg)) if name == "sasrec" else HSTU(HSTUConfig.from_dict(cfg))
    )
    model.n_items_, model.n_users_ = n_items, 1
    model.net_ = model._build().eval()
    return model


def uncached_requests(model: SASRec | HSTU, history: list[int], n: int) -> Callable[[], Any]:
    """Each call appends the next event and scores the whole history from scratch."""
    hist, new, user = list(history[:n]), iter(history[n:]), np.array([-1])

    def request() -> Any:
        hist.append(next(new))
        return model.score(user, Histories.from_lists([hist]))

    return request


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="50,200,1000")
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--n-items", type=int, default=3706)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lengths = [int(x) for x in args.lengths.split(",")]
    max_len = max(lengths) + args.requests + 4
    rng = np.random.default_rng(0)
    rows = []
    for name in ("sasrec", "hstu"):
        model = build(name, args.n_items, args.dim, args.blocks, args.heads, max_len)
        for n in lengths:
            history = rng.integers(0, args.n_items, size=n + 2 * args.requests + 8).tolist()
            uncached_ms = median_ms(uncached_requests(model, history, n), args.requests, warmup=3)
            scorer = IncrementalScorer(model, defer_refresh=True)
            state, _ = scorer.start(history[:n])
            feed = iter(history[n:])
            for _ in range(3):  # warm-up, untimed
                scorer.append(state, next(feed))
                scorer.refresh(state)
            request, refresh = [], []
            max_err = 0.0
            for _ in range(args.requests):
                item = next(feed)
                t0 = time.perf_counter()
                scores = scorer.append(state, item)
                t1 = time.perf_counter()
                if not state.fresh:
                    scorer.refresh(state)
                t2 = time.perf_counter()
                request.append((t1 - t0) * 1000)
                refresh.append((t2 - t1) * 1000)
            max_err = float((scores - full_scores(model, state.items)).abs().max())
            row = {
                "model": name,
                "history": n,
                "uncached_ms": uncached_ms,
                "cached_ms": statistics.median(request),
                "refresh_ms": statistics.median(refresh),
                "cached_inline_ms": statistics.median(a + b for a, b in zip(request, refresh, strict=True)),
                "speedup_request": uncached_ms / statistics.median(request),
                "max_abs_diff_vs_uncached": max_err,
            }
            rows.append(row)
            print(
                f"{name:6s} history {n:5d}: uncached {uncached_ms:7.2f} ms  "
                f"cached {row['cached_ms']:6.2f} ms  refresh {row['refresh_ms']:7.2f} ms  "
                f"(×{row['speedup_request']:.1f}, max diff {max_err:.1e})",
                flush=True,
            )
    record = {
        "model": "sasrec+hstu",
        "dataset": f"random-{args.n_items}-items",
        "seed": 0,
        "tag": "incremental",
        "size": {"dim": args.dim, "n_blocks": args.blocks, "n_heads": args.heads, "max_len": max_len},
        "requests_per_point": args.requests,
        "rows": rows,
        "environment": environment(),
    }
    path = append_record("incremental", record)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
