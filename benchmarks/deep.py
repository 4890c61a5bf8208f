"""Deep models on one dataset under the standard protocol, one JSON record per run.

    python -m benchmarks.deep --dataset ml-1m --models sasrec,gru4rec,caser,mlp \\
        [--path DIR] [--seeds 1] [--set sasrec.epochs=50 --set max_minutes=10]

Each model runs its default recipe (`playnext recipes`; `--set` overrides fields) through
`playnext.experiment.run`, the same path as `playnext train --recipe`: leave-one-out, full
ranking, seen items excluded, early stopping on *validation* NDCG@10, test evaluated once.
`--path` defaults to `$PLAYNEXT_DATA_DIR/<dataset folder>`.
Records go to benchmarks/results/<dataset>.json (tag "deep"), the table to results/<dataset>.md.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, append_record, bench_record, data_path, load_records
from benchmarks.report import table
from playnext import recipes
from playnext.data.interactions import Interactions
from playnext.data.readers import load_dataset
from playnext.data.split import Split, leave_one_out
from playnext.evaluate.protocol import judge_on
from playnext.experiment import ExperimentResult, Plan, refit_on_train_and_valid, run
from playnext.experiment import record as record_of

TAG = "deep"
# each model runs its default recipe (src/playnext/recipes/*.toml, `playnext recipes`)


def load(dataset: str, path: str | None) -> Interactions:
    """A dataset from `path`, else from `$PLAYNEXT_DATA_DIR/<its folder>`."""
    return load_dataset(dataset, path or data_path(dataset))


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
    ap.add_argument("--path", default=None, help="default: $PLAYNEXT_DATA_DIR/<dataset folder>")
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
            overrides = {**parse_overrides(args.set, name), "seed": seed, **run_only}
            plan = Plan.from_recipe(recipes.default_for(name), overrides=overrides, refit=args.refit)
            plan.candidates()  # fail fast on a typo, before training
            t0 = time.perf_counter()
            done = run(plan, data, dataset=args.dataset, split=split)
            res, model = done.result, done.result.model
            record = bench_record(done.record, args.tag, wall_seconds=time.perf_counter() - t0)
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
    model, refit_params, seconds = refit_on_train_and_valid(name, split, params, int(source["best_epoch"]))
    test = judge_on(model, split, split.test, ties="expected", exclude_seen=True)
    plan = Plan(model=name, base=params, refit=True)
    res = ExperimentResult(model, params, source["valid_metrics"], test, [], seconds, refit_params, model)
    record = {
        **bench_record(
            record_of(plan, res, split, dataset=args.dataset, n_items=split.train.n_items), args.tag
        ),
        "valid_metrics": source["valid_metrics"],  # the choice was made there
        "params": source["params"],
        "refit_from": {k: source.get(k) for k in ("tag", "best_epoch", "train_seconds", "git_commit")},
        "train_seconds": seconds,  # the refit alone; the selection's is in refit_from
        "best_epoch": None,
    }
    append_record(args.dataset, record)
    m = test.metrics
    print(
        f"{name} seed {seed} refit from {args.refit_from} ({source['best_epoch']} epochs): "
        f"test NDCG@10 {m['NDCG@10']:.4f} HR@10 {m['HR@10']:.4f}, refit {seconds / 60:.1f} min",
        flush=True,
    )
    write_table(args.dataset)


def write_table(dataset: str) -> None:
    records = [r for r in load_records() if r.get("dataset") == dataset]
    text = (
        f"# {dataset}\n\nTest split, leave-one-out, full ranking, seen items excluded, expected ties; "
        f"written by `benchmarks/deep.py` from `results/{dataset}.json`.\n\n{table(records)}\n"
    )
    (RESULTS / f"{dataset}.md").write_text(text)


if __name__ == "__main__":
    main()
