"""The SASRec block ladder: each way RecTools' (and the SASRec authors') block differs from
playnext's, switched on alone, on ML-1M validation, for a short fixed number of epochs.

    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE python -m benchmarks.ladder \\
        [--path $PLAYNEXT_DATA_DIR/ml-1m] [--epochs 6] [--seeds 0 1] [--variants base relu ...]

Every run trains on leave-one-out's train events with the peers comparison's shared config
(benchmarks/peers.py: 64 wide, 2 blocks, 1 head, max_len 200, dropout 0.2, batch 128, lr 1e-3,
constant, no clipping, full softmax) and is scored on the validation targets after every epoch;
the test targets are never read. A rung is one variant against `base` with the same seeds; the
differences it measures are the ones peers.md lists. Records go to results/ladder.json (one per
variant and seed, with the per-epoch validation curve), the table to docs/ladder.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, append_record, data_path, environment
from benchmarks.peers import CONFIG, PLAYNEXT_FIXED
from playnext.data.readers import load_dataset
from playnext.data.split import leave_one_out
from playnext.io import write_text
from playnext.models.registry import create

NAME = "ladder"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "ladder.md"
# one rung each: what RecTools 0.19 / the authors' code does where playnext differs
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "authors-block": {"block": "sasrec"},
    "relu": {"activation": "relu"},
    "attn-dropout": {"attn_dropout": 0.2},
    "beta2-0.98": {"adam_beta2": 0.98},
    "xavier": {"init": "xavier"},
    "unscaled-items": {"scale_items": False},
    # the rungs that won alone, together: gains need not add up
    "winners": {"init": "xavier", "block": "sasrec", "adam_beta2": 0.98},
}
METRIC = "valid_NDCG@10"


def run(data: Any, variant: str, seed: int, epochs: int) -> dict[str, Any]:
    """One fit of one rung; the record with its validation curve."""
    params = {**CONFIG, **PLAYNEXT_FIXED, **VARIANTS[variant], "epochs": epochs, "seed": seed}
    t0 = time.perf_counter()
    model = create("sasrec", **params).fit(data.train, data.valid)
    report = model.training_report()
    assert report is not None
    curve = [round(float(h[METRIC]), 5) for h in report.history]
    return {
        "model": "sasrec",
        "dataset": "ml-1m",
        "seed": seed,
        "tag": f"ladder-{epochs}",
        "variant": variant,
        "params": params,
        "epochs": epochs,
        "metrics": {
            "valid_NDCG@10": curve[-1],
            "valid_NDCG@10_best": max(curve),
            "seconds_per_epoch": statistics.mean(
                float(h["seconds"]) for h in report.history[1:] or report.history
            ),
        },
        "curve": curve,
        "wall_seconds": time.perf_counter() - t0,
        "load_average": os.getloadavg(),
    }


def table(epochs: int) -> str:
    """docs/ladder.md from results/ladder.json: each rung's mean ± std over seeds and its gain
    over `base` on the same seeds."""
    rows = [r for r in load_records_of(NAME) if r.get("tag") == f"ladder-{epochs}"]
    by: dict[str, dict[int, float]] = {}
    for r in rows:
        by.setdefault(r["variant"], {})[r["seed"]] = r["metrics"]["valid_NDCG@10"]
    base = by.get("base", {})
    lines = [
        f"# The SASRec block ladder (ML-1M validation, {epochs} epochs)",
        "",
        "Each rung switches on one way RecTools' SASRec block differs from playnext's (benchmarks/peers.py "
        "lists them), under the peers comparison's shared config (the last rungs combine the ones that "
        "won); validation NDCG@10 after the last epoch, mean ± std over seeds; the gain is against `base` "
        "on the same seeds. The test targets are not read.",
        "",
        f"    python -m benchmarks.ladder --epochs {epochs} --seeds 0 1",
        "",
        "| rung | switch | valid NDCG@10 | gain vs base | seeds |",
        "|---|---|---:|---:|---:|",
    ]
    for name, switch in VARIANTS.items():
        got = by.get(name, {})
        if not got:
            continue
        vals = list(got.values())
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        same = [s for s in got if s in base]
        gain = (
            f"{statistics.mean(got[s] / base[s] for s in same) - 1:+.1%}" if same and name != "base" else ""
        )
        sw = ", ".join(f"`{k} = {v!r}`" for k, v in switch.items()) or "(playnext's block)"
        lines.append(f"| {name} | {sw} | {statistics.mean(vals):.4f} ± {std:.4f} | {gain} | {len(vals)} |")
    return "\n".join(lines) + "\n"


def load_records_of(name: str) -> list[dict[str, Any]]:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else []


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--path", type=Path, default=None, help="the ml-1m folder (default: $PLAYNEXT_DATA_DIR/ml-1m)"
    )
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--table-only", action="store_true", help="rewrite docs/ladder.md from the records")
    args = p.parse_args()
    if not args.table_only:
        data = leave_one_out(load_dataset("ml-1m", args.path or data_path("ml-1m")))
        print(f"ml-1m: {environment().get('git_commit')}", flush=True)
        for seed in args.seeds:  # every rung of a seed before the next seed: a cut run still compares
            for variant in args.variants:
                rec = run(data, variant, seed, args.epochs)
                append_record(NAME, rec, key=("model", "dataset", "seed", "tag", "variant"))
                print(
                    f"{variant} seed {seed}: valid NDCG@10 {rec['metrics']['valid_NDCG@10']:.4f} "
                    f"({rec['metrics']['seconds_per_epoch']:.0f} s/epoch) curve {rec['curve']}",
                    flush=True,
                )
                write_text(DOCS, table(args.epochs))
    write_text(DOCS, table(args.epochs))


if __name__ == "__main__":
    main()
