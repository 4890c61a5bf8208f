"""Why HSTU sat on a plateau, measured: the item table's initial scale and how many items each
step's loss reaches.

HSTU scores cos(state, item) / τ with an item table shared by input and output. Adam moves each
entry by about lr per step whatever its size, so a table initialised at 1/sqrt(dim) turns its
directions several times slower than one at 0.02 (the reference code's init); and a large input
embedding dominates the residual stream, so at first every state points at its own current item.
Sampled softmax with K shared negatives also pushes down only K items per step, where a full
softmax (SASRec's loss) moves every item's embedding every step.
This trains the same small HSTU with each variant for a fixed number of epochs (no early
stopping, no time budget) and records the validation curve and the test score of the weights
chosen on validation:

    python -m benchmarks.hstu_plateau --dataset ml-100k

The curves do not depend on the machine's speed (a fixed number of steps, deterministic kernels;
the recorded runs used one thread, OMP_NUM_THREADS=1), so they can be rerun beside other work;
`train_seconds` can not.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from typing import Any

from benchmarks.common import RESULTS, append_record, bench_record
from benchmarks.deep import load, parse_overrides
from benchmarks.report import mean_std
from playnext.data.split import leave_one_out
from playnext.experiment import Plan, run

BASE: dict[str, Any] = {
    "dim": 64,
    "n_blocks": 2,
    "n_heads": 1,
    "max_len": 200,
    "batch_size": 128,
    "lr": 1e-3,
    "epochs": 20,
    "warmup_epochs": 0.0,
    "eval_every": 2,
    "patience": 0,
    "dropout": 0.2,
    "n_negatives": 128,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "init-1/sqrt(d)": {"item_init_std": 1.0 / math.sqrt(BASE["dim"])},  # before this change
    "init-0.02": {"item_init_std": 0.02},
    "init-0.02+abs_pos": {"item_init_std": 0.02, "abs_pos": True},
    "init-0.02+neg1024": {"item_init_std": 0.02, "n_negatives": 1024},
    "init-0.02+full-softmax": {"item_init_std": 0.02, "loss": "ce"},
    "init-0.02+full-softmax+abs_pos": {"item_init_std": 0.02, "loss": "ce", "abs_pos": True},
    # the late plateau: three times the epochs, with and without weight averaging over the last
    # ~50 steps (~6 epochs of ML-100K's 8 steps); validation and the kept model use the average
    "full-softmax-60ep": {"item_init_std": 0.02, "loss": "ce", "epochs": 60},
    "full-softmax-60ep+ema": {"item_init_std": 0.02, "loss": "ce", "epochs": 60, "ema_decay": 0.98},
}


def write_table() -> str:
    """results/hstu_plateau.md: validation NDCG@10 along training and the chosen weights' test score,
    mean ± std over the seeds that ran."""
    records = json.loads((RESULTS / "hstu_plateau.json").read_text())
    epochs = sorted({int(e) for r in records for e, _ in r["valid_curve"]})
    shown = [e for e in epochs if e in (2, 4, 10, 20, epochs[-1])]

    lines = [
        "| variant | seeds | "
        + " | ".join(f"valid NDCG@10, epoch {e}" for e in shown)
        + " | best valid NDCG@10 | test NDCG@10 | test HR@10 |",
        "|---|---:|" + "---:|" * (len(shown) + 3),
    ]
    for dataset, tag in dict.fromkeys((r["dataset"], r["tag"]) for r in records):
        rows = [r for r in records if r["dataset"] == dataset and r["tag"] == tag]
        curves = [dict((int(e), v) for e, v in r["valid_curve"]) for r in rows]
        cells = [mean_std(v) if (v := [c[e] for c in curves if e in c]) else "—" for e in shown]
        best = mean_std([r["valid_metrics"]["NDCG@10"] for r in rows])
        test = [best] + [mean_std([r["metrics"][m] for r in rows]) for m in ("NDCG@10", "HR@10")]
        lines.append(f"| {dataset} {tag} | {len(rows)} | " + " | ".join(cells + test) + " |")
    text = (
        "# HSTU plateau: item-table init and loss\n\nWritten by `benchmarks/hstu_plateau.py` from "
        "`results/hstu_plateau.json`; test = the weights chosen on validation.\n\n" + "\n".join(lines) + "\n"
    )
    (RESULTS / "hstu_plateau.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--path", default=None, help="default: $PLAYNEXT_DATA_DIR/<dataset folder>")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="for every variant")
    ap.add_argument("--table-only", action="store_true", help="rewrite results/hstu_plateau.md and stop")
    ap.add_argument("--skip-done", action="store_true", help="skip (variant, seed) pairs already recorded")
    args = ap.parse_args()
    if args.table_only:
        print(write_table())
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    data = load(args.dataset, args.path)
    split = leave_one_out(data)
    path = RESULTS / "hstu_plateau.json"
    records = json.loads(path.read_text()) if path.exists() else []
    done = {(r["dataset"], r["tag"], r["seed"]) for r in records}
    for seed in range(args.seeds):  # seed-major: each finished seed is a complete comparison
        for tag in args.variants.split(","):
            if args.skip_done and (args.dataset, tag, seed) in done:
                continue
            overrides = {**parse_overrides(args.set, "hstu"), "seed": seed}
            plan = Plan(model="hstu", base={**BASE, **VARIANTS[tag]}, overrides=overrides)
            ran = run(plan, data, dataset=args.dataset, split=split)
            res, report = ran.result, ran.result.model.report_
            curve = [(h["epoch"], h["valid_NDCG@10"]) for h in report.history if "valid_NDCG@10" in h]
            append_record("hstu_plateau", bench_record(ran.record, tag, valid_curve=curve))
            print(
                f"{tag} seed {seed}: valid NDCG@10 by epoch "
                + " ".join(f"{v:.4f}" for _, v in curve)
                + f"; test NDCG@10 {res.test.metrics['NDCG@10']:.4f} (best epoch {report.best_epoch})",
                flush=True,
            )
            write_table()


if __name__ == "__main__":
    main()
