"""The request's time as context (issue #32), a SHORT-budget comparison: `hstu-large` against
`hstu-large-request-time` on ML-1M, each trained for the same wall-clock budget, one after the
other, under the standard protocol (leave-one-out, full ranking, seen items excluded; the epoch
chosen on validation NDCG@10, test read once).

    python -m benchmarks.request_time [--data-dir DIR] [--minutes 12] [--seed 0]

`--data-dir` defaults to `$PLAYNEXT_DATA_DIR/ml-1m`. The request time of a question is its
target's timestamp, so the comparison needs timestamps: with ML-1M's `ratings.dat` every user
takes part; a folder that has only the time-ordered pairs file and `ratings_users_*.dat` (the
raw ratings.dat lines of some users) is read as those users alone, with their timestamps, and
the record says so (`data`). Each budget's cosine schedule ends with the budget, so a short run
is a complete, shorter schedule — not the full 60-epoch recipe (about 100 minutes on 2 cores),
and not the issue's target. Records: results/request_time.json (tags `request-time-short-query`
and `request-time-short-request`).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import append_record, bench_record, data_path
from playnext import recipes
from playnext.data.interactions import Columns, Interactions
from playnext.data.readers import load_dataset
from playnext.data.split import leave_one_out
from playnext.experiment import Plan, popularity_baseline, run

TAG = "request-time-short"
RECIPES = ("hstu-large", "hstu-large-request-time")
KEY = ("model", "dataset", "seed", "tag", "recipe")


def load_timed(folder: Path) -> tuple[Interactions, str, str]:
    """ML-1M with timestamps: (the log, its dataset name, what it holds)."""
    data = load_dataset("ml-1m", folder)
    if data.frame.get_column(Columns.TIMESTAMP).null_count() == 0:
        return data, "ml-1m", "ML-1M ratings.dat: every user, with timestamps"
    parts = sorted(folder.glob("ratings_users_*.dat"))
    if not parts:
        raise SystemExit(f"{folder}: no timestamps (no ratings.dat nor ratings_users_*.dat) to compare on")
    with tempfile.TemporaryDirectory() as tmp:  # the reader's own ratings.dat path, over the timed part
        with open(Path(tmp) / "ratings.dat", "wb") as out:
            for p in parts:
                out.write(p.read_bytes())
        if (folder / "movies.dat").is_file():
            os.symlink((folder / "movies.dat").resolve(), Path(tmp) / "movies.dat")
        data = load_dataset("ml-1m", tmp)
    what = (
        f"ML-1M, only the users of {', '.join(p.name for p in parts)} ({data.n_users} users, "
        f"{len(data)} ratings): the part with timestamps; ML-1M's full ratings.dat is not in the folder"
    )
    return data, "ml-1m-timed-part", what


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="default: $PLAYNEXT_DATA_DIR/ml-1m")
    ap.add_argument("--minutes", type=float, default=12.0, help="training budget of each run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--tag", default=TAG)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    data, dataset, what = load_timed(Path(args.data_dir) if args.data_dir else data_path("ml-1m"))
    split = leave_one_out(data)
    note = (
        f"SHORT-budget comparison: {args.minutes:g} training minutes per run (the cosine schedule "
        "ends with the budget), run one after the other on the same machine; not the full recipe "
        "schedule and not the issue's target"
    )
    baseline: dict[str, Any] | None = None
    for name in args.recipes.split(","):
        recipe = recipes.load(name)
        plan = Plan.from_recipe(recipe, overrides={"seed": args.seed}, budget_minutes=args.minutes)
        baseline = baseline or popularity_baseline(plan, split)
        ran = run(plan, data, dataset=dataset, split=split)
        params = ran.record["params"]
        extra = {"time_reference": params["time_reference"], "data": what, "note": note, "baseline": baseline}
        # one tag per variant: the tables group runs by tag, and these are not two seeds of one
        rec = bench_record(ran.record, f"{args.tag}-{params['time_reference']}", **extra)
        append_record("request_time", rec, key=KEY)
        valid, test = ran.record["valid_metrics"], ran.record["metrics"]
        print(
            f"{name} ({params['time_reference']}): valid NDCG@10 {valid['NDCG@10']:.4f} HR@10 "
            f"{valid['HR@10']:.4f}; test NDCG@10 {test['NDCG@10']:.4f} HR@10 {test['HR@10']:.4f} "
            f"(best epoch {ran.record['best_epoch']} of {ran.record['epochs']}, "
            f"{ran.record['train_seconds'] / 60:.1f} min)",
            flush=True,
        )


if __name__ == "__main__":
    main()
