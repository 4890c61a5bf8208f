"""Popularity and EASE on the real datasets under the standard protocol.

    python -m benchmarks.baselines [--datasets ml-1m,ml-100k,lastfm-2k,steam-200k] [--data-dir DIR]

Leave-one-out over the stable time order, full ranking, seen items excluded, expected-ties;
EASE's λ chosen on validation. Both models are deterministic, so one seed is the whole story.
Writes one record per (model, dataset) to benchmarks/results/<dataset>.json, then refreshes
the README table (benchmarks/report.py).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from benchmarks.common import append_record, environment, peak_rss_bytes
from playnext.data.readers import load_dataset
from playnext.data.split import leave_one_out
from playnext.evaluate.protocol import protocol_description, select_and_test

FOLDERS = {
    "ml-1m": "ml-1m",
    "ml-100k": "ml-100k",
    "lastfm-2k": "lastfm-hetrec-2k",
    "steam-200k": "steam-200k",
    "ml-latest-small": "ml-latest-small",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", default="ml-100k,ml-1m,steam-200k,lastfm-2k")
    ap.add_argument("--models", default="popular,ease")
    ap.add_argument("--l2", default="", help="EASE λ grid, comma-separated (default: EASE.search_space)")
    ap.add_argument("--data-dir", default=os.environ.get("PLAYNEXT_DATA_DIR", "../shared/datasets"))
    args = ap.parse_args()
    for ds in args.datasets.split(","):
        t0 = time.perf_counter()
        data = load_dataset(ds, Path(args.data_dir) / FOLDERS.get(ds, ds))
        split = leave_one_out(data)
        load_s = time.perf_counter() - t0
        for model in args.models.split(","):
            grid = [{"l2": float(v)} for v in args.l2.split(",")] if args.l2 and model == "ease" else None
            res = select_and_test(
                model,
                split,
                grid=grid,
                on_candidate=lambda p, v, ds=ds, model=model: print(
                    f"  {ds} {model} {p} valid NDCG@10={v['NDCG@10']:.4f}", flush=True
                ),
            )
            record = {
                "model": model,
                "dataset": ds,
                "seed": 0,
                "tag": "baseline",
                "metrics": res.test.metrics,
                "valid_metrics": res.valid_metrics,
                "params": res.params,
                "candidates": res.candidates,
                "train_seconds": res.train_seconds,
                "eval_seconds": res.test.seconds,
                "load_seconds": load_s,
                "n_users_evaluated": res.test.n_users,
                "n_items": data.n_items,
                "peak_rss_bytes": peak_rss_bytes(),
                "protocol": protocol_description(split, "expected", True),
                "environment": environment(),
            }
            path = append_record(ds, record)
            m = res.test.metrics
            print(
                f"{ds} {model}: NDCG@10={m['NDCG@10']:.4f} HR@10={m['HR@10']:.4f} "
                f"train={res.train_seconds:.1f}s → {path}",
                flush=True,
            )
    from benchmarks.report import main as report

    report()


if __name__ == "__main__":
    main()
