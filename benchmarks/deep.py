"""Deep models on one dataset under the standard protocol, one JSON record per run.

    python -m benchmarks.deep --dataset ml-1m --path /work/shared/datasets/ml-1m \\
        --models sasrec,gru4rec,caser,mlp [--seeds 1] [--set sasrec.epochs=50 --set max_minutes=10]

Leave-one-out, full ranking, seen items excluded, histories cropped to max_len 200. Each model
trains through the one loop with early stopping on *validation* NDCG@10; test is evaluated once.
Records go to benchmarks/results/<dataset>.json (tag "deep"), the table to results/<dataset>.md.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks.common import RESULTS, append_record, environment, load_records, peak_rss_bytes
from benchmarks.report import table
from playnext.data.interactions import Interactions
from playnext.data.split import Split, leave_one_out
from playnext.evaluate.protocol import (
    judge_on,
    protocol_description,
    refit_on_train_and_valid,
    select_and_test,
)
from playnext.models.registry import get

TAG = "deep"
# Recipes sized for a 2-core CPU; the time budgets end each model's cosine schedule on time.
BENCH: dict[str, dict[str, Any]] = {
    "sasrec": {  # chosen on ML-1M validation over 64 wide / 1 head (0.1897 vs 0.1831 NDCG@10)
        "max_len": 200,
        "dim": 128,
        "n_blocks": 2,
        "n_heads": 2,
        "dropout": 0.2,
        "lr": 2e-3,
        "batch_size": 64,
        "loss": "ce",
        "epochs": 200,
        "warmup_epochs": 1.0,
        "eval_every": 2,
        "patience": 10,
        "max_minutes": 44.0,
    },
    "gru4rec": {  # chosen on ML-1M validation over 128 wide / lr 1e-3 variants (docs in README)
        "max_len": 200,
        "dim": 64,
        "hidden": 64,  # a 64-wide state halves the epoch: the recurrence's backward dominates on CPU
        "dropout": 0.1,
        "lr": 2e-3,
        "batch_size": 128,
        "loss": "ce",
        "epochs": 300,
        "warmup_epochs": 1.0,
        "eval_every": 2,
        "patience": 10,
        "max_minutes": 66.0,
    },
    "hstu": {  # from the ML-100K plateau study (benchmarks/hstu_plateau.py); ML-1M test 0.1940 (README)
        "max_len": 200,
        "dim": 128,
        "n_blocks": 8,  # chosen on ML-1M validation over 4 blocks (0.1986 vs 0.1974): HSTU-large's depth
        "n_heads": 2,
        "dropout": 0.3,  # chosen on ML-1M validation over 0.2 (0.2042 vs 0.2014 and 0.1986)
        "lr": 1e-3,
        "batch_size": 128,
        "loss": "ce",  # a full softmax over the L2-normalised items at τ 0.05: every item a negative
        "temperature": 0.05,
        "item_init_std": 0.02,
        "amp": "bf16",  # 2.07x a CPU epoch with the buckets (results/train_speed.json); as auto on CUDA
        "length_buckets": 16,
        "epochs": 60,  # a fixed cosine: the same schedule on any host, whatever its speed
        "warmup_epochs": 1.0,
        "eval_every": 2,
        "patience": 0,  # the whole schedule; the best epoch is kept (54 of 60)
        "max_minutes": 0.0,
    },
    "caser": {
        "max_len": 5,
        "dim": 50,
        "dropout": 0.5,
        "lr": 2e-3,
        "batch_size": 2048,
        "loss": "ce",
        "epochs": 30,
        "warmup_epochs": 0.5,
        "patience": 5,
        "max_minutes": 25.0,
    },
    "mlp": {
        "variant": "neumf",
        "dim": 32,
        "epochs": 20,
        "batch_size": 1024,
        "lr": 2e-3,
        "patience": 4,
        "max_minutes": 20.0,
    },
}


def load(dataset: str, path: str) -> Interactions:
    try:
        from playnext.data.readers import load_dataset
    except ImportError:  # the dataset readers are not there yet: ML-1M's plain `user item` file
        file = Path(path) / "interactions_all_users.txt"
        frame = pl.read_csv(file, separator=" ", has_header=False, new_columns=["user", "item"])
        return Interactions.from_frame(frame, name=dataset)  # file order = time order
    return load_dataset(dataset, path)


def parse_overrides(items: list[str], model: str) -> dict[str, str]:
    """`key=value` applies to every model, `model.key=value` to one."""
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        scope, _, field = key.rpartition(".")
        if not scope or scope == model:
            out[field] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--path", default="/work/shared/datasets/ml-1m")
    ap.add_argument("--models", default="sasrec,gru4rec,caser,mlp")
    ap.add_argument("--seeds", type=int, default=1, help="number of seeds (first-seed .. first-seed+n-1)")
    ap.add_argument("--first-seed", type=int, default=0, help="extend a recorded run without repeating it")
    ap.add_argument("--set", action="append", default=[], metavar="[MODEL.]KEY=VALUE")
    ap.add_argument("--checkpoints", default="", help="folder for per-epoch checkpoints (enables --resume)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--tag", default=TAG, help="record tag, e.g. deep-gpu to keep GPU runs apart")
    ap.add_argument("--save", default="", help="folder: save each seed-0 model as a servable artifact")
    ap.add_argument(
        "--refit",
        action="store_true",
        help="retrain the chosen config on train + validation events before test",
    )
    ap.add_argument(
        "--refit-from",
        default="",
        metavar="TAG",
        help="skip selection: refit the config and best epoch recorded under TAG (chosen on validation "
        "by that run) on train + validation events, test once, record under --tag",
    )
    args = ap.parse_args()
    if args.first_seed < 0 or args.seeds < 1:
        ap.error(f"--first-seed must be >= 0 and --seeds >= 1, got {args.first_seed} and {args.seeds}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    data = load(args.dataset, args.path)
    split = leave_one_out(data)
    print(f"{args.dataset}: {data.n_users} users, {data.n_items} items, {len(data)} interactions", flush=True)
    for name in args.models.split(","):
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            run_only: dict[str, Any] = {}
            if args.checkpoints:
                run_only["checkpoint_dir"] = str(Path(args.checkpoints) / f"{args.dataset}-{name}-{seed}")
                run_only["resume"] = args.resume
            if args.refit_from:  # the recorded run's params, checked when its refit config is built
                refit_from_record(args, name, seed, split, run_only)
                continue
            params = {**BENCH.get(name, {}), **parse_overrides(args.set, name), "seed": seed, **run_only}
            get(name).config_class.from_dict(params)  # fail fast on a typo, before training
            t0 = time.perf_counter()
            res = select_and_test(name, split, grid=[params], refit=args.refit)
            model = res.model
            report = getattr(res.chosen, "report_", None)  # the selection run's curve and best epoch
            record = {
                **run_record(args, name, seed, model, res.test, split, args.refit),
                "valid_metrics": res.valid_metrics,
                "params": res.chosen.config.to_dict(),
                "train_seconds": res.train_seconds,
                "seconds_per_epoch": report.seconds_per_epoch if report else None,
                "epochs": report.epochs if report else None,
                "best_epoch": report.best_epoch if report else None,
                "history": report.history if report else None,
                "wall_seconds": time.perf_counter() - t0,
            }
            append_record(args.dataset, record)
            if args.save and seed == 0:
                from playnext.artifact import Artifact

                out = Artifact.from_data(model, data, record).save(Path(args.save) / f"{args.dataset}-{name}")
                print(f"saved {out}", flush=True)
            m = res.test.metrics
            print(
                f"{name} seed {seed}: test NDCG@10 {m['NDCG@10']:.4f} HR@10 {m['HR@10']:.4f} "
                f"(valid NDCG@10 {res.valid_metrics['NDCG@10']:.4f}), train {res.train_seconds / 60:.1f} min",
                flush=True,
            )
            write_table(args.dataset)


def refit_from_record(
    args: argparse.Namespace, name: str, seed: int, split: Split, run_only: dict[str, Any] | None = None
) -> None:
    """The refit half of `--refit` for a selection that already ran: its recorded config and
    best epoch, both chosen on validation, retrained on train + validation events. Why: on CPU
    the selection run alone takes two hours; this reuses it instead of repeating it. `run_only`
    (this run's checkpoint folder and resume flag) replaces the recorded run's, so a long refit
    can be checkpointed and resumed."""
    found = [
        r
        for r in load_records()
        if r.get("dataset") == args.dataset
        and r.get("tag") == args.refit_from
        and r.get("model") == name
        and r.get("seed") == seed
        and r.get("best_epoch")
    ]
    if len(found) != 1:
        raise SystemExit(
            f"--refit-from {args.refit_from}: need exactly one {args.dataset} {name} seed-{seed} record "
            f"with a best epoch in {RESULTS}, found {len(found)}"
        )
    source = found[0]
    params = {**source["params"], **parse_overrides(args.set, name), "seed": seed, **(run_only or {})}
    model, _, seconds = refit_on_train_and_valid(name, split, params, int(source["best_epoch"]))
    test = judge_on(model, split, split.test, ties="expected", exclude_seen=True)
    record = {
        **run_record(args, name, seed, model, test, split, refit=True),
        "valid_metrics": source["valid_metrics"],  # the choice was made there
        "params": source["params"],
        "refit_from": {k: source.get(k) for k in ("tag", "best_epoch", "train_seconds", "git_commit")},
        "train_seconds": seconds,  # the refit alone; the selection's is in refit_from
        "epochs": model.config.epochs,
        "history": model.report_.history if model.report_ else None,
    }
    append_record(args.dataset, record)
    m = test.metrics
    print(
        f"{name} seed {seed} refit from {args.refit_from} ({source['best_epoch']} epochs): "
        f"test NDCG@10 {m['NDCG@10']:.4f} HR@10 {m['HR@10']:.4f}, refit {seconds / 60:.1f} min",
        flush=True,
    )
    write_table(args.dataset)


def run_record(
    args: argparse.Namespace, name: str, seed: int, model: Any, test: Any, split: Split, refit: bool
) -> dict[str, Any]:
    """The fields every deep-model record has, whichever way its tested model was trained."""
    env = environment()
    return {
        "model": name,
        "dataset": args.dataset,
        "seed": seed,
        "tag": args.tag,
        "metrics": test.metrics,
        "n_params": int(model.n_params()) if hasattr(model, "n_params") else None,
        "eval_seconds": test.seconds,
        "peak_rss_bytes": peak_rss_bytes(),
        "protocol": protocol_description(split, "expected", True, refit),
        # the tested model's own config: typed and complete (a --set value arrives as a string)
        "refit_params": model.config.to_dict() if refit else None,
        "git_commit": env["git_commit"],
        "environment": env,
    }


def write_table(dataset: str) -> None:
    records = [r for r in load_records() if r.get("dataset") == dataset]
    text = (
        f"# {dataset}\n\nTest split, leave-one-out, full ranking, seen items excluded, expected ties; "
        f"written by `benchmarks/deep.py` from `results/{dataset}.json`.\n\n{table(records)}\n"
    )
    (RESULTS / f"{dataset}.md").write_text(text)


if __name__ == "__main__":
    main()
