"""Popularity and EASE on the real datasets under the standard protocol.

    python -m benchmarks.baselines [--datasets ml-1m,ml-100k,lastfm-2k,steam-200k] [--data-dir DIR]

Leave-one-out over the stable time order, full ranking, seen items excluded, expected-ties;
EASE's λ chosen on validation (its recipe's `--search` ladder, or `--l2`). Both models are
deterministic, so one seed is the whole story.
Writes one record per (model, dataset) to benchmarks/results/<dataset>.json, then refreshes
the README table (benchmarks/report.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.common import FOLDERS, append_record, bench_record, data_path
from playnext import recipes
from playnext.data.readers import load_dataset
from playnext.data.split import leave_one_out
from playnext.experiment import Plan, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", default="ml-100k,ml-1m,steam-200k,lastfm-2k")
    ap.add_argument("--models", default="popular,ease")
    ap.add_argument("--l2", default="", help="EASE λ grid, comma-separated (default: EASE.search_space)")
    ap.add_argument("--data-dir", default=None, help="default: $PLAYNEXT_DATA_DIR")
    args = ap.parse_args()
    for ds in args.datasets.split(","):
        t0 = time.perf_counter()
        data = load_dataset(ds, Path(args.data_dir) / FOLDERS.get(ds, ds) if args.data_dir else data_path(ds))
        split = leave_one_out(data)
        load_s = time.perf_counter() - t0
        for model in args.models.split(","):
            plan = Plan.from_recipe(recipes.default_for(model), search=True)
            if args.l2 and model == "ease":
                plan.search = [{"l2": float(v)} for v in args.l2.split(",")]
            done = run(
                plan,
                data,
                dataset=ds,
                split=split,
                on_candidate=lambda p, v, ds=ds, model=model: print(
                    f"  {ds} {model} {p} valid NDCG@10={v['NDCG@10']:.4f}", flush=True
                ),
            )
            res = done.result
            path = append_record(ds, bench_record(done.record, "baseline", load_seconds=load_s))
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
