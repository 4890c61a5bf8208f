"""Scaling study: what does a bigger sequential model buy? One command trains a ladder of sizes
for SASRec and HSTU under the standard protocol and records quality, size, compute and cost.

    python -m benchmarks.scaling --dataset ml-1m \\
        --time-budget-minutes 10 [--models sasrec,hstu] [--sizes xs,s,m,l,xl] [--device auto]

Each (model, size) runs in its own process (so peak memory is that run's own): leave-one-out,
full ranking, seen items excluded; training stops early on *validation* NDCG@10 or when the
per-model time budget is spent (checked after every batch, the cosine schedule ends with the
budget); the best-on-validation weights are evaluated once on test. Records go to
benchmarks/results/scaling_<dataset>.json (tag = size), plots to docs/scaling_<dataset>_*.png and
a table into docs/scaling_study.md between markers.

Training FLOPs are estimated from what was actually computed (batch padding included):

    FLOPs ≈ 6 · N_nonemb · P  +  6 · L · a · S  +  6 · D · C · Y

P = positions processed, N_nonemb = parameters outside the item/position embeddings, L = blocks,
a = per-head (q·k + attn·v) width summed over heads (SASRec 2D, HSTU H·(d_qk + d_v)), S = query-key
pairs per layer (Σ over batches of rows · T²), D = width, C = output candidates per target
(catalog for full softmax, 1 + negatives for sampled), Y = positions with a target. The 6 is
2 FLOPs per multiply-add × 3 for forward + backward.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import RESULTS, append_record, bench_record
from benchmarks.deep import load, parse_overrides
from playnext import recipes
from playnext.data.split import leave_one_out
from playnext.evaluate.protocol import evaluate, model_scorer
from playnext.experiment import ExperimentResult, Plan
from playnext.experiment import record as record_of
from playnext.models.registry import get
from playnext.train.device import resolve_device
from playnext.train.loop import Batch

DOCS = Path(__file__).resolve().parent.parent / "docs"
STUDY = DOCS / "scaling_study.md"
MODELS = ("sasrec", "hstu")
# (dim, blocks, heads): width and depth grow together, from tiny to HSTU-large depth
SIZES: dict[str, tuple[int, int, int]] = {
    "xs": (16, 1, 1),
    "s": (32, 1, 1),
    "m": (64, 2, 1),
    "l": (128, 2, 2),
    "xl": (256, 4, 4),
    "xxl": (384, 8, 4),
}
# each rung starts from the shipped recipe `scaling-<model>` (src/playnext/recipes/)


def budgeted(cls: type[Any]) -> type[Any]:
    """The model class, with its batch stream cut off at a deadline and compute counted."""

    class Budgeted(cls):
        deadline: float = float("inf")
        cut: bool = False  # whether the budget ended an epoch early
        counts: dict[str, int]

        def _fit(self, train_data: Any, valid: Any) -> None:
            self.counts = {"positions": 0, "targets": 0, "pairs": 0, "batches": 0}
            self.cut = False
            self.deadline = float("inf")  # starts with the first batch, after the loop's own clock
            super()._fit(train_data, valid)

        def train_batches(
            self, rng: np.random.Generator, batch_size: int, rank: int, world_size: int
        ) -> Iterator[Batch]:
            if self.deadline == float("inf"):
                self.deadline = time.perf_counter() + 60.0 * float(self.config.max_minutes or 1e9)
            for batch in super().train_batches(rng, batch_size, rank, world_size):
                if time.perf_counter() > self.deadline:
                    self.cut = True
                    return
                rows, width = batch["inputs"].shape
                self.counts["positions"] += rows * width
                self.counts["pairs"] += rows * width * width
                self.counts["targets"] += int((batch["targets"] > 0).sum())
                self.counts["batches"] += 1
                yield batch

    Budgeted.__name__ = Budgeted.__qualname__ = cls.__name__
    return Budgeted


def embedding_params(model: Any) -> int:
    net = model.net_
    n = net.item_emb.weight.numel()
    if getattr(net, "pos_emb", None) is not None:  # HSTU has one only with abs_pos
        n += net.pos_emb.weight.numel()
    # relative-bias tables are lookups, not multiply-adds
    n += sum(p.numel() for name, p in net.named_parameters() if ".rab." in name)
    return int(n)


def flops(model: Any, counts: dict[str, int], n_items: int) -> dict[str, float]:
    cfg = model.config
    non_emb = model.n_params() - embedding_params(model)
    if model.name == "hstu":
        dqk, dv = cfg.head_dims
        a = cfg.n_heads * (dqk + dv)
    else:
        a = 2 * cfg.dim
    cand = n_items if cfg.loss == "ce" else 1 + cfg.n_negatives
    dense = 6.0 * non_emb * counts["positions"]
    attention = 6.0 * cfg.n_blocks * a * counts["pairs"]
    output = 6.0 * cfg.dim * cand * counts["targets"]
    return {"total": dense + attention + output, "dense": dense, "attention": attention, "output": output}


def run_one(args: argparse.Namespace, name: str, size: str) -> dict[str, Any]:
    dim, blocks, heads = SIZES[size]
    data = load(args.dataset, args.path)
    split = leave_one_out(data)
    params: dict[str, Any] = {
        **recipes.load(f"scaling-{name}").params,
        "dim": dim,
        "n_blocks": blocks,
        "n_heads": heads,
        "max_len": args.max_len,
        "max_minutes": args.time_budget_minutes,
        "device": args.device,
        "seed": args.seed,
    }
    if args.epochs:
        params["epochs"] = args.epochs
    if name == "hstu":
        # every ladder so far started HSTU's item table at 1/sqrt(dim); keep rungs comparable
        # (the model's own default is now 0.02: faster at 64 wide on ML-100K, slower over the
        # first epochs at 256 wide on ML-1M — docs/scaling_study.md)
        params["item_init_std"] = 1.0 / math.sqrt(dim)
    params.update(parse_overrides(args.set, name))
    cls = budgeted(get(name))
    model = cls(cls.config_class.from_dict(params))
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    model.fit(split.train, split.valid)
    train_seconds = time.perf_counter() - t0
    report = model.report_
    counts = split.train.item_counts()
    test = evaluate(model_scorer(model), split.test, split.train.n_items, item_counts=counts)
    f = flops(model, model.counts, split.train.n_items)
    valid = {"NDCG@10": report.best_score} if report else {}
    res = ExperimentResult(model, params, valid, test, [], train_seconds)
    plan = Plan(model=name, base=params, recipe=f"scaling-{name}")
    ran = record_of(plan, res, split, dataset=args.dataset, n_items=split.train.n_items)
    record: dict[str, Any] = {
        **bench_record(ran, size),
        "valid_ndcg10": report.best_score if report else None,
        "n_params_non_embedding": int(model.n_params() - embedding_params(model)),
        "train_seconds": train_seconds,
        "flops": f["total"],
        "flops_parts": f,
        "flops_formula": "6*N_nonemb*positions + 6*L*a*pairs + 6*D*candidates*targets",
        "compute_counts": model.counts,
        "stopped": "budget"
        if model.cut or (report and report.epochs < params["epochs"] and not report.stopped_early)
        else ("early" if report and report.stopped_early else "epochs"),
        "time_budget_minutes": args.time_budget_minutes,
        "peak_gpu_bytes": int(torch.cuda.max_memory_allocated()) if device.type == "cuda" else None,
        "device": str(device),
    }
    append_record(f"scaling_{args.label or args.dataset}", record)
    m = test.metrics
    print(
        f"{name}-{size}: {record['n_params']:,} params, "
        f"test NDCG@10 {m['NDCG@10']:.4f} HR@10 {m['HR@10']:.4f}, "
        f"{record['epochs']} epochs in {train_seconds / 60:.1f} min, {f['total']:.3g} FLOPs",
        flush=True,
    )
    return record


def load_scaling(label: str) -> list[dict[str, Any]]:
    path = RESULTS / f"scaling_{label}.json"
    return json.loads(path.read_text()) if path.exists() else []


def plot(dataset: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = load_scaling(dataset)
    out = []
    for key, label, fname in (
        ("n_params", "parameters (total, incl. item embeddings)", "params"),
        ("train_seconds", "training wall time (s)", "time"),
        ("flops", "estimated training FLOPs", "flops"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        for name in MODELS:
            rows = sorted((r for r in records if r["model"] == name), key=lambda r: r["n_params"])
            if not rows:
                continue
            xs = [r[key] for r in rows]
            ys = [r["metrics"]["NDCG@10"] for r in rows]
            ax.plot(xs, ys, marker="o", label=name)
            for x, y, r in zip(xs, ys, rows, strict=True):
                ax.annotate(r["tag"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test NDCG@10 (full ranking)")
        budgets = sorted({float(r["time_budget_minutes"]) for r in records if r.get("time_budget_minutes")})
        ax.set_title(
            f"{dataset}: NDCG@10 vs {fname} (budget {', '.join(f'{b:g}' for b in budgets)} min/model)"
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = DOCS / f"scaling_{dataset}_{fname}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        out.append(path)
    return out


def table(dataset: str) -> str:
    records = sorted(load_scaling(dataset), key=lambda r: (r["model"], r["n_params"]))
    lines = [
        "| model | size | dim×blocks×heads | params | non-emb params | epochs (best) | train min | "
        "FLOPs | peak RSS GB | valid NDCG@10 | test NDCG@10 | test HR@10 |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        p = r["params"]
        lines.append(
            f"| {r['model']} | {r['tag']} | {p['dim']}×{p['n_blocks']}×{p['n_heads']} | {r['n_params']:,} | "
            f"{r['n_params_non_embedding']:,} | {r['epochs']} ({r['best_epoch']}) | "
            f"{r['train_seconds'] / 60:.1f} | {r['flops']:.2e} | {r['peak_rss_bytes'] / 1e9:.2f} | "
            f"{(r.get('valid_ndcg10') or float('nan')):.4f} | {r['metrics']['NDCG@10']:.4f} | "
            f"{r['metrics']['HR@10']:.4f} |"
        )
    return "\n".join(lines)


def write_doc(dataset: str) -> None:
    start, end = f"<!-- scaling:{dataset} -->", f"<!-- /scaling:{dataset} -->"
    block = (
        f"{start}\n_Written by `benchmarks/scaling.py` from `benchmarks/results/scaling_{dataset}.json`._\n\n"
        f"{table(dataset)}\n\n![NDCG@10 vs parameters](scaling_{dataset}_params.png) "
        f"![NDCG@10 vs training time](scaling_{dataset}_time.png) "
        f"![NDCG@10 vs FLOPs](scaling_{dataset}_flops.png)\n{end}"
    )
    text = STUDY.read_text() if STUDY.exists() else "# Scaling study\n"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + f"\n\n## {dataset}\n\n{block}\n"
    STUDY.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-1m", choices=["ml-1m", "ml-100k", "lastfm-2k", "steam-200k"])
    ap.add_argument("--path", default=None, help="default: $PLAYNEXT_DATA_DIR/<dataset folder>")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--sizes", default="xs,s,m,l,xl")
    ap.add_argument("--time-budget-minutes", type=float, default=10.0, help="training budget per model")
    ap.add_argument("--epochs", type=int, default=0, help="epoch cap (0 = the recipe's 200)")
    ap.add_argument("--max-len", type=int, default=200)
    ap.add_argument("--device", default="auto", help="auto = CUDA (bf16 autocast) if present, else CPU")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--label", default="", help="name of the results file, plots and doc section (default: the dataset)"
    )
    ap.add_argument(
        "--set", action="append", default=[], metavar="[MODEL.]KEY=VALUE", help="recipe overrides"
    )
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)  # "model:size": run one, in-process
    ap.add_argument("--plots-only", action="store_true", help="redraw plots and the table from the records")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    if args.child:
        name, size = args.child.split(":")
        run_one(args, name, size)
        return
    if not args.plots_only:
        for size in args.sizes.split(","):
            if size not in SIZES:
                raise SystemExit(f"unknown size {size!r}; known: {', '.join(SIZES)}")
        for size in args.sizes.split(","):  # interleaved: a cut-short ladder still compares models
            for name in args.models.split(","):
                cmd = [sys.executable, "-m", "benchmarks.scaling", *sys.argv[1:], "--child", f"{name}:{size}"]
                rc = subprocess.run(cmd, check=False).returncode
                if rc != 0:
                    print(f"{name}-{size} failed with exit code {rc}", flush=True)
    DOCS.mkdir(exist_ok=True)
    for p in plot(args.label or args.dataset):
        print(f"wrote {p}")
    write_doc(args.label or args.dataset)
    print(f"wrote {STUDY}")


if __name__ == "__main__":
    main()
