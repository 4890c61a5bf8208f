"""playnext's SASRec against RecTools' SASRecModel: one run, one split, one config, one metric.

    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE python -m benchmarks.peers \\
        [--path $PLAYNEXT_DATA_DIR/ml-1m] [--rectools-python $PLAYNEXT_RECTOOLS_PYTHON] \\
        [--epochs 5] [--max-len 200] [--threads 2]

Both libraries train on the same events — leave-one-out's train + validation events, i.e.
everything but each user's last event — for the same fixed number of epochs (no validation, no
early stopping, constant learning rate, no gradient clipping), are asked for every user's
top-10 with seen items filtered, and are scored by ONE implementation, playnext's full-ranking
`evaluate` on the leave-one-out test targets (RecTools' full score matrix is ranked exactly as
playnext's own scores are; the metrics of both libraries' top-10 lists are kept as a check).
Seconds per epoch are the mean of epochs 2..N (the first pays one-time costs); ratios are
playnext / RecTools from the same run, so the machine and its load are the same for both.
Records go to results/peers.json, the table to results/peers.md.

RecTools runs in its own scratch virtualenv (it pins numpy < 2, pandas and pytorch-lightning),
outside the repository, as a subprocess (benchmarks/peers_rectools.py, which never imports
playnext). Create it once, with the CPU torch build and a constraint that keeps it:

    python3.11 -m venv $SCRATCH/rectools-venv
    $SCRATCH/rectools-venv/bin/pip install torch==2.13.0
    echo torch==2.13.0 > $SCRATCH/rectools-constraints.txt
    $SCRATCH/rectools-venv/bin/pip install -c $SCRATCH/rectools-constraints.txt \\
        "rectools[torch]==0.19.0"
    export PLAYNEXT_RECTOOLS_PYTHON=$SCRATCH/rectools-venv/bin/python
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

import playnext
from benchmarks.common import PEERS_SHOWN, RESULTS, append_record, environment, peak_rss_bytes
from playnext import recipes
from playnext.data.interactions import Columns, Interactions
from playnext.data.readers import load_dataset
from playnext.data.split import EvalSet, leave_one_out
from playnext.evaluate.metrics import mask_excluded, topk_items
from playnext.evaluate.protocol import evaluate, model_scorer
from playnext.io import write_text
from playnext.models.registry import create

HERE = Path(__file__).resolve().parent
NAME = "peers"
SHOWN = PEERS_SHOWN
K = 10
# the shared config, in playnext's names; peers_rectools.py maps them to RecTools' arguments
CONFIG: dict[str, Any] = {
    "max_len": 200,
    "dim": 64,
    "n_blocks": 2,
    "n_heads": 1,
    "dropout": 0.2,
    "lr": 1e-3,
    "batch_size": 128,
    "epochs": 5,
}
# playnext settings that make its loop train as RecTools' default trainer does
PLAYNEXT_FIXED: dict[str, Any] = {
    "loss": "ce",  # full softmax, RecTools' "softmax"
    "schedule": "constant",
    "warmup_epochs": 0.0,
    "clip_norm": 0.0,
    "patience": 0,
    "max_minutes": 0.0,
    "device": "cpu",
    "amp": "off",
    "verbose": False,
}
FIGURES: tuple[tuple[str, str], ...] = (
    ("seconds_per_epoch", "s / epoch (mean of epochs 2..N)"),
    ("train_seconds", "train s (N epochs)"),
    ("recommend_seconds", "recommend s (all users, top-10, seen filtered)"),
    ("NDCG@10", "NDCG@10"),
    ("HR@10", "HR@10"),
)
SETUP = {
    "split": "leave-one-out (playnext.data.split), stable time order",
    "train": "train + validation events (all but each user's last event), both libraries",
    "test": "each user's last event; history = the training events; seen items excluded",
    "ranking": "full (all items); playnext's evaluate for both, expected ties",
    "training": "fixed epochs, no validation, no early stopping, constant lr, no clipping",
}
# what differs between the two SASRecs even under one config (read from RecTools 0.19.0's source)
DIFFERENCES: tuple[str, ...] = (
    "block: RecTools keeps the SASRec authors' block (q = LN(x); x = q + MHA(q, x, x); f = LN(x); "
    "x = f + FFN(f): keys and values un-normalised, residuals from the normalised input); playnext is "
    "pre-LN (x + Attn(LN(x)), x + FFN(LN(x)))",
    "feed-forward: ReLU in RecTools, GELU in playnext (width = dim in both)",
    "dropout: RecTools drops attention weights (MultiheadAttention dropout = dropout_rate); playnext "
    "keeps attention weights (attn_dropout 0) and drops the attention output instead",
    "padding: RecTools zeroes padded positions but does not mask them as keys (use_key_padding_mask "
    "False), so queries also attend to left padding; playnext masks padding keys",
    "positions: both learned and aligned to the latest item; playnext scales item embeddings by "
    "sqrt(dim), RecTools does not",
    "init: RecTools Xavier-normal on every matrix (item table included); playnext N(0, 1/sqrt(dim)) "
    "items, N(0, 0.02) positions, PyTorch defaults for linear layers",
    "loss: both full-softmax cross-entropy averaged over positions with a target; RecTools computes "
    "logits at all max_len positions (padding too) and over the padding token as an extra class, "
    "playnext only at positions with a target, over real items",
    "optimiser: Adam lr 1e-3, no weight decay, no clipping in both; betas (0.9, 0.98) in RecTools, "
    "(0.9, 0.999) in playnext (its defaults of a cosine schedule and clip_norm 1.0 are turned off here)",
    "catalogue: RecTools knows only the items of the sequences it trains on (each user's last "
    "max_len + 1 events; 3,647 of ML-1M's 3,706 at max_len 200, missing 2 test targets, which count "
    "as misses); playnext scores every item of the dataset",
    "scoring: RecTools runs every position through every block and ranks with TorchRanker; playnext "
    "runs the last block for the last position only, in longest-first chunks",
)
VENV_HELP = (
    "benchmarks.peers needs RecTools in a scratch virtualenv outside the repository: pass its python "
    "with --rectools-python or set PLAYNEXT_RECTOOLS_PYTHON; `python -m benchmarks.peers --help` "
    "shows the commands that create it."
)


@dataclasses.dataclass
class Side:
    """What one library's run measured."""

    library: str
    version: str
    epoch_seconds: list[float]
    train_seconds: float
    recommend_seconds: float
    metrics: dict[str, float]  # NDCG@10 / HR@10 from full scores (primary) and from top-10 lists
    n_params: int
    params: dict[str, Any]  # the library's own settings beyond the shared config
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def steady_seconds(epoch_seconds: list[float]) -> float:
    """Mean of epochs 2..N: the first epoch pays one-time costs (allocator, kernel choice)."""
    if not epoch_seconds:
        raise ValueError("no epochs were timed")
    steady = epoch_seconds[1:] or epoch_seconds
    return float(sum(steady) / len(steady))


def figures(side: Side) -> dict[str, float]:
    return {
        "seconds_per_epoch": steady_seconds(side.epoch_seconds),
        "train_seconds": side.train_seconds,
        "recommend_seconds": side.recommend_seconds,
        "NDCG@10": side.metrics["NDCG@10"],
        "HR@10": side.metrics["HR@10"],
    }


def ratios(ours: dict[str, float], theirs: dict[str, float]) -> dict[str, float]:
    """ours / theirs for every figure both have (below 1: fewer seconds or a lower metric)."""
    return {k: ours[k] / theirs[k] for k in ours if k in theirs and theirs[k] != 0}


def build_records(
    ours: Side,
    theirs: Side,
    *,
    dataset: str,
    config: dict[str, Any],
    seed: int,
    run: dict[str, Any],
    tag: str = NAME,
) -> list[dict[str, Any]]:
    """One record per library (playnext first); both carry this run's playnext / RecTools ratios."""
    ratio = ratios(figures(ours), figures(theirs))
    out = []
    for side in (ours, theirs):
        out.append(
            {
                "model": f"sasrec ({side.library})",
                "library": side.library,
                "library_version": side.version,
                "dataset": dataset,
                "seed": seed,
                "tag": tag,
                "metrics": {**figures(side), **side.metrics},
                "params": dict(config),
                "library_params": side.params,
                "train_seconds": side.train_seconds,
                "epoch_seconds": side.epoch_seconds,
                "recommend_seconds": side.recommend_seconds,
                "n_params": side.n_params,
                "ratio_playnext_over_rectools": ratio,
                "setup": SETUP,
                **side.extra,
                **run,
            }
        )
    return out


def markdown(records: list[dict[str, Any]]) -> str:
    """The peers table: each figure for both libraries and their ratio, plus what was run."""
    pn, rt = records
    ratio = pn["ratio_playnext_over_rectools"]
    cfg = pn["params"]
    libs = f"playnext {pn['library_version']} | RecTools {rt['library_version']}"
    head = f"| figure | {libs} | playnext / RecTools |"
    lines = [
        f"# SASRec: playnext vs RecTools on {pn['dataset']}",
        "",
        ", ".join(f"{k} {v}" for k, v in cfg.items()) + f"; seed {pn['seed']}; "
        f"{pn.get('threads', '?')} threads each; {pn.get('recommend_users', '?')} users.",
        "",
        head,
        "|---|---:|---:|---:|",
    ]
    for key, label in FIGURES:
        digits = 4 if "@" in key else 2
        a, b = pn["metrics"][key], rt["metrics"][key]
        r = f"{ratio[key]:.2f}" if key in ratio else "–"
        lines.append(f"| {label} | {a:.{digits}f} | {b:.{digits}f} | {r} |")
    lines += ["", *(f"- {k}: {v}" for k, v in pn["setup"].items())]
    checks = [
        f"- {r['library']}: top-10-list NDCG@10 {r['metrics']['lists/NDCG@10']:.4f}, "
        f"HR@10 {r['metrics']['lists/HR@10']:.4f}"
        for r in records
        if "lists/NDCG@10" in r["metrics"]
    ]
    agree = rt.get("lists_agree_with_full_scores")
    if agree is not None:
        checks.append(
            f"- RecTools' recommend lists = the top-10 of its full score matrix for {agree:.1%} of users"
        )
    if checks:
        lines += ["", "Checks: the same metrics from each library's top-10 lists; the score matrix:", *checks]
    lines += ["", "What differs between the two implementations:", *(f"- {d}" for d in DIFFERENCES)]
    if pn.get("command"):
        lines += ["", f"Run: `OMP_NUM_THREADS={pn.get('threads')} OMP_WAIT_POLICY=PASSIVE {pn['command']}`."]
    versions = rt.get("versions")
    if versions:
        lines += ["", "RecTools side: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    return "\n".join(lines) + "\n"


def recorded(tag: str, dataset: str) -> list[dict[str, Any]]:
    """The playnext and RecTools records of the latest recorded run under `tag`."""
    rows = [r for r in json.loads((RESULTS / f"{NAME}.json").read_text()) if r.get("tag") == tag]
    rows = [r for r in rows if r.get("dataset") == dataset]
    by_lib = {r["library"]: r for r in sorted(rows, key=lambda r: str(r.get("run_started")))}
    if set(by_lib) != {"playnext", "rectools"}:
        raise SystemExit(f"results/{NAME}.json has no playnext + rectools pair tagged {tag!r} on {dataset}")
    return [by_lib["playnext"], by_lib["rectools"]]


# ---- the run ---------------------------------------------------------------------------------
def write_inputs(train: Interactions, workdir: Path, request: dict[str, Any]) -> None:
    """Training events with external ids in playnext's order; `datetime` is that order (row
    rank, in seconds), so RecTools' stable sort by time reproduces every user's sequence.
    `weight` is 1 for every event: both SASRecs train on implicit plays, and the ML-1M copy has
    ratings for users 1-2999 only (a null weight turned RecTools' loss NaN from the first epoch)."""
    c = Columns
    f = train.frame
    frame = pl.DataFrame(
        {
            "user_id": train.users.external.gather(f.get_column(c.USER)),
            "item_id": train.items.external.gather(f.get_column(c.ITEM)),
            "weight": np.ones(f.height),
            "datetime": np.arange(f.height, dtype=np.int64),
        }
    )
    frame.write_csv(workdir / "train.csv")
    (workdir / "request.json").write_text(json.dumps(request))


def run_rectools(python: str, workdir: Path, threads: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    env["MKL_NUM_THREADS"] = str(threads)
    env.pop("PYTHONPATH", None)  # the venv sees only its own packages
    subprocess.run([python, str(HERE / "peers_rectools.py"), str(workdir)], env=env, check=True)
    result: dict[str, Any] = json.loads((workdir / "rectools.json").read_text())
    return result


def matrix_scorer(full: np.ndarray) -> Any:
    """A playnext scorer over a precomputed (all users × items) matrix."""
    return lambda users, history: torch.from_numpy(full[users])


def rectools_matrices(train: Interactions, workdir: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """RecTools' scores and top-k lists as playnext-indexed (users × items) matrices.

    Items RecTools never saw in training cannot be recommended by it: they score -inf (a
    target among them is a miss). The list matrix gives the k listed items k..1 and the rest
    0, which ranks a listed target exactly and an unlisted one below 10.
    """
    full, n_cols = rectools_full(train, workdir, "scores.npy")
    reco = pl.read_csv(workdir / "reco.csv", schema_overrides={"user_id": pl.String, "item_id": pl.String})
    lists = np.zeros((train.n_users, train.n_items), dtype=np.float32)
    u = train.users.to_internal(reco.get_column("user_id").to_list(), kind="user")
    i = train.items.to_internal(reco.get_column("item_id").to_list())
    lists[u, i] = K + 1 - reco.get_column("rank").to_numpy()
    return full, lists, n_cols


def rectools_full(train: Interactions, workdir: Path, name: str) -> tuple[np.ndarray, int]:
    """A RecTools score matrix (`name` in workdir) as playnext-indexed (users × items), items it
    never saw at -inf; and how many items it knows."""
    ids = json.loads((workdir / "score_ids.json").read_text())
    rows = train.users.to_internal(ids["users"], kind="user")
    cols = train.items.to_internal(ids["items"])
    full = np.full((train.n_users, train.n_items), -np.inf, dtype=np.float32)
    full[np.ix_(rows, cols)] = np.load(workdir / name)
    return full, len(cols)


def top_lists(scorer: Any, questions: EvalSet, n_items: int) -> tuple[np.ndarray, float]:
    """Every user's top-K with seen items filtered, from one scoring pass: (lists, seconds)."""
    t0 = time.perf_counter()
    scores = scorer(questions.users, questions.history).float().clone()  # (U, I)
    mask_excluded(scores, questions.exclude)
    top = topk_items(scores, K)  # (U, K)
    return top.numpy(), time.perf_counter() - t0


def list_matrix(top: np.ndarray, users: np.ndarray, n_users: int, n_items: int) -> np.ndarray:
    out = np.zeros((n_users, n_items), dtype=np.float32)
    out[np.repeat(users, top.shape[1]), top.ravel()] = np.tile(np.arange(K, 0, -1), len(users))
    return out


def quality(scorer: Any, questions: EvalSet, n_items: int, prefix: str = "") -> dict[str, float]:
    m = evaluate(scorer, questions, n_items, ks=(K,)).metrics
    return {f"{prefix}NDCG@{K}": m[f"NDCG@{K}"], f"{prefix}HR@{K}": m[f"HR@{K}"]}


def agreement(a: np.ndarray, b: np.ndarray, users: np.ndarray) -> float:
    """Share of users whose two top-K matrices list the same item set."""
    return float(np.mean([set(np.flatnonzero(a[u] > 0)) == set(np.flatnonzero(b[u] > 0)) for u in users]))


def overrides(pairs: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs, each value read as JSON where it parses (0.98, false, "x"), else text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


# ---- time-to-quality ------------------------------------------------------------------------
def seconds_to_reach(curve: list[list[float]], level: float) -> float | None:
    """Training seconds at the first evaluation that reaches `level` (None: never)."""
    return next((sec for sec, v in curve if v >= level), None)


def curve_records(curves: dict[str, list[list[float]]], common: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per library: its curve of (training seconds, validation NDCG@10), its final
    and best points, and the seconds it needed to reach the other library's final quality."""
    (a, ca), (b, cb) = curves.items()
    out = []
    for lib, mine, other in ((a, ca, cb), (b, cb, ca)):
        final, other_final = mine[-1][1], other[-1][1]
        out.append(
            {
                **common[lib],
                "curve": mine,
                "metrics": {
                    "valid_NDCG@10": final,
                    "valid_NDCG@10_best": max(v for _, v in mine),
                    "train_seconds": mine[-1][0],
                    "seconds_to_other_final": seconds_to_reach(mine, other_final),
                    "other_final_valid_NDCG@10": other_final,
                },
            }
        )
    return out


def plot_curves(curves: dict[str, list[list[float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for lib, pts in curves.items():
        ax.plot([p[0] / 60 for p in pts], [p[1] for p in pts], marker="o", label=lib)
    ax.set_xlabel("training minutes (2 CPU cores; scoring not counted)")
    ax.set_ylabel("validation NDCG@10")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curve_params(over: dict[str, Any], minutes: float, seed: int) -> dict[str, Any]:
    """playnext's side of the curve: the shipped sasrec recipe (not the config class's defaults),
    then `--set`, then the curve's own budget, validation every epoch and no early stop."""
    timed = {"max_minutes": minutes, "eval_every": 1, "patience": 0, "verbose": False}
    return {**recipes.load("sasrec").params, **over, **timed, "seed": seed, "device": "cpu"}


def run_curve(args: argparse.Namespace, data: Interactions, run: dict[str, Any]) -> None:
    """Each library at its shipped SASRec config, trained on leave-one-out's train events for
    `--minutes` of training, scored on the validation targets after every epoch. playnext's
    recipe runs to the end of its budget (patience 0; its cosine schedule ends with the budget),
    validating every epoch; RecTools stops at the first epoch end past the budget."""
    split = leave_one_out(data)
    train, valid, n_items = split.train, split.valid, data.n_items
    budget = args.minutes * 60.0
    with tempfile.TemporaryDirectory(prefix="peers-curve-") as tmp:
        workdir = Path(tmp)
        request = {"curve": True, "budget_seconds": budget, "seed": args.seed, "threads": args.threads}
        write_inputs(train, workdir, {**request, "k": K, "deterministic": False, "config": CONFIG})
        rt = run_rectools(args.rectools_python, workdir, args.threads)
        rt_curve, elapsed = [], 0.0
        for epoch, sec in enumerate(rt["epoch_seconds"], 1):
            elapsed += sec
            full, _ = rectools_full(train, workdir, f"curve-{epoch}.npy")
            rt_curve.append([elapsed, quality(matrix_scorer(full), valid, n_items)["NDCG@10"]])
    over = overrides(args.set)
    model = create("sasrec", **curve_params(over, args.minutes, args.seed))
    model.fit(train, valid)
    report = model.report_
    pn_curve, elapsed = [], 0.0
    for h in report.history:
        elapsed += float(h["seconds"])
        if "valid_NDCG@10" in h:
            pn_curve.append([elapsed, float(h["valid_NDCG@10"])])
    curves = {"playnext": pn_curve, "rectools": rt_curve}
    shared = {
        "dataset": args.dataset,
        "seed": args.seed,
        "tag": "peers-curve",
        "budget_minutes": args.minutes,
    }
    common = {
        "playnext": {
            **shared,
            **run,
            "model": "sasrec (playnext)",
            "library": "playnext",
            "library_version": playnext.__version__,
            "params": model.config.to_dict(),
            "config": "the shipped `sasrec` recipe" + (f" with {over}" if over else ""),
        },
        "rectools": {
            **shared,
            **run,
            "model": "sasrec (rectools)",
            "library": "rectools",
            "library_version": rt["versions"]["rectools"],
            "params": rt["params"],
            "config": "RecTools' SASRecModel defaults (only the CPU trainer and the time limit set)",
            "epoch_seconds": rt["epoch_seconds"],
        },
    }
    records = curve_records(curves, common)
    for r in records:
        print(f"{r['library']}: {r['curve']}  {r['metrics']}", flush=True)
    if args.users:
        return
    for r in records:
        append_record(NAME, r)
    plot_curves(curves, RESULTS / "peers_curve.png", f"SASRec on {args.dataset}: time to quality")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data_dir = os.environ.get("PLAYNEXT_DATA_DIR")
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--path", default=str(Path(data_dir) / "ml-1m") if data_dir else None)
    ap.add_argument("--rectools-python", default=os.environ.get("PLAYNEXT_RECTOOLS_PYTHON"))
    ap.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    ap.add_argument("--max-len", type=int, default=CONFIG["max_len"])
    ap.add_argument("--n-heads", type=int, default=CONFIG["n_heads"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--users", type=int, default=0, help="a smoke run: the first N users, nothing recorded")
    ap.add_argument("--tag", default=NAME)
    ap.add_argument("--table", action="store_true", help="only rewrite results/<tag>.md from the json")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a playnext SASRec field (repeatable)"
    )
    ap.add_argument("--curve", action="store_true", help="time-to-quality: each library's shipped config")
    ap.add_argument("--minutes", type=float, default=20.0, help="--curve: training minutes per library")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.table:
        write_text(RESULTS / f"{args.tag}.md", markdown(recorded(args.tag, args.dataset)))
        return
    if not args.rectools_python or not os.access(args.rectools_python, os.X_OK):
        sys.exit(VENV_HELP)
    if not args.path:
        sys.exit("no dataset folder: pass --path or set PLAYNEXT_DATA_DIR")
    torch.set_num_threads(args.threads)
    config = {**CONFIG, "epochs": args.epochs, "max_len": args.max_len, "n_heads": args.n_heads}

    data = load_dataset(args.dataset, args.path)
    if args.users:
        data = data.replace(data.frame.filter(pl.col(Columns.USER) < args.users))
    if args.curve:
        started = {"run_started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "threads": args.threads}
        run_curve(args, data, {**started, "command": " ".join(["python -m benchmarks.peers", *sys.argv[1:]])})
        return
    split = leave_one_out(data)
    train, test, n_items = split.train_and_valid(), split.test, data.n_items
    run = {
        "run_started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python -m benchmarks.peers", *sys.argv[1:]]),
        "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "recommend_users": len(test),
        "train_events": len(train),
        "environment": environment(),
    }

    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        workdir = Path(tmp)
        request = {
            "config": config,
            "seed": args.seed,
            "threads": args.threads,
            "k": K,
            "deterministic": False,
        }
        write_inputs(train, workdir, request)
        load_before = os.getloadavg()[0]
        rt = run_rectools(args.rectools_python, workdir, args.threads)
        full, rt_lists, rt_items = rectools_matrices(train, workdir)
    if rt.get("nan_score_rows"):  # ranking NaN scores has no meaning: say where they came from
        raise SystemExit(
            f"RecTools' scores are NaN for {rt['nan_score_rows']} of {rt['n_users']} users "
            f"({rt.get('nan_parameters')} NaN parameters): its fit diverged; its per-epoch loss is above"
        )
    rt_from_full, _ = top_lists(matrix_scorer(full), test, n_items)
    rt_side = Side(
        library="rectools",
        version=rt["versions"]["rectools"],
        epoch_seconds=rt["epoch_seconds"],
        train_seconds=rt["fit_seconds"],
        recommend_seconds=rt["recommend_seconds"],
        metrics={
            **quality(matrix_scorer(full), test, n_items),
            **quality(matrix_scorer(rt_lists), test, n_items, "lists/"),
        },
        n_params=rt["n_params"],
        params={"loss": "softmax", "adam_betas": [0.9, 0.98], "deterministic": False, "trainer": "cpu"},
        extra={
            "versions": rt["versions"],
            "full_scores_seconds": rt["full_scores_seconds"],
            "catalog_items": rt_items,
            "lists_agree_with_full_scores": agreement(
                rt_lists, list_matrix(rt_from_full, test.users, data.n_users, n_items), test.users
            ),
            "load_average_before": load_before,
            "peak_rss_bytes": rt["peak_rss_bytes"],
        },
    )

    load_before = os.getloadavg()[0]
    model = create("sasrec", **config, **PLAYNEXT_FIXED, **overrides(args.set), seed=args.seed)
    t0 = time.perf_counter()
    model.fit(train, None)
    pn_train_s = time.perf_counter() - t0
    report = model.report_
    pn_top, pn_rec_s = top_lists(model_scorer(model), test, n_items)
    pn_lists = list_matrix(pn_top, test.users, data.n_users, n_items)
    pn_side = Side(
        library="playnext",
        version=playnext.__version__,
        epoch_seconds=[float(h["seconds"]) for h in report.history],
        train_seconds=pn_train_s,
        recommend_seconds=pn_rec_s,
        metrics={
            **quality(model_scorer(model), test, n_items),
            **quality(matrix_scorer(pn_lists), test, n_items, "lists/"),
        },
        n_params=model.n_params(),
        params=model.config.to_dict(),
        extra={"versions": {"torch": torch.__version__}, "load_average_before": load_before},
    )
    pn_side.extra["peak_rss_bytes"] = peak_rss_bytes()
    records = build_records(
        pn_side, rt_side, dataset=args.dataset, config=config, seed=args.seed, run=run, tag=args.tag
    )
    table = markdown(records)
    print(table)
    if args.users:  # a smoke run on a subset: printed, never recorded
        return
    for r in records:
        append_record(NAME, r)
    write_text(RESULTS / f"{args.tag}.md", table)


if __name__ == "__main__":
    main()
