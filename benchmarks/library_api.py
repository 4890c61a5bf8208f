"""In-memory `model.recommend(data, k=10)` for every ML-1M user, and the CLI batch path beside it.

    python -m benchmarks.library_api --data-dir DIR [--epochs 1] [--repeats 5] [--cli-repeats 3]
                                     [--model-dir SAVED]

DIR (or `$PLAYNEXT_DATA_DIR`) holds `ml-1m/`. A SASRec 64 wide (`pn.SASRec(dim=64, ...)`: the
shipped `sasrec` recipe's other fields, max_len 200 included) is fitted for `--epochs` on the
whole log (or `--model-dir` loads one an earlier run saved): quality is not what is measured,
only the time to answer every user. Then:

* the public API: `model.recommend(data, k=10)` (all 6,040 users, seen items excluded) —
  one warm-up call, then `--repeats` timed calls (min / median / max seconds);
* the CLI batch path: `pn.save(model, data, M)` and `playnext recommend --model-dir M
  --all-users --k 10 --out recs.parquet` as a child process (whole process: interpreter start,
  imports, model folder load, scoring, Parquet), `--cli-repeats` times; and the same
  `playnext.batch.recommend_all` in this process (one warm-up, then `--cli-repeats` times);
* whether both give every user the same items in the same order (and, where not, the lists
  with their scores);
* where the API call's time goes: the model's `score`, the ranking (`playnext.ranking.rank`:
  masking seen items + top-k) and the DataFrame building, each timed alone over the same
  batches `Model.recommend` uses.

torch runs on `--threads` (2) threads with OMP_WAIT_POLICY=PASSIVE, both set before torch is
imported, and the child gets the same. The machine's load average is recorded before and after,
since the 2 cores are shared. Writes one record to benchmarks/results/library_api.json.
"""

from __future__ import annotations

import os

# before anything imports torch (benchmarks.common imports playnext.experiment, which does)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATASET = "ml-1m"
TARGET_SECONDS = 1.5  # issue #29: every ML-1M user's top-10 in memory on 2 cores
PARAMS: dict[str, Any] = {"dim": 64, "verbose": False}  # on top of the shipped `sasrec` recipe


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[dict[str, Any], Any]:
    """(min / median / max / every run's wall seconds of `fn()` after `warmup` unrecorded calls,
    with the CPU seconds of each (every thread of this process), the last call's result)."""
    out = None
    for _ in range(warmup):
        out = fn()
    runs, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return summary(runs, cpu), out


def summary(runs: list[float], cpu: list[float] | None = None) -> dict[str, Any]:
    """Wall seconds (min, median, max, each run) and, when given, CPU seconds: on shared cores
    the wall time of a busy machine is inflated by waiting, the CPU time much less so."""
    out: dict[str, Any] = {
        "min": min(runs),
        "median": statistics.median(runs),
        "max": max(runs),
        "runs": [round(r, 4) for r in runs],
    }
    if cpu:
        out["cpu_seconds_median"] = statistics.median(cpu)
        out["cpu_seconds"] = [round(c, 4) for c in cpu]
    return out


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds from its own resource usage, stdout) of one child process."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)}: exit {proc.returncode}\n{err.read()[-3000:]}")
        return wall, usage.ru_utime + usage.ru_stime, out.read()


def compare(api: Any, cli: Any) -> dict[str, Any]:
    """Whether the API's frame (user, rank, item, score) and the CLI's Parquet (user_id, rank,
    item_id, score) give every user the same items in the same order; where they do not, the
    users' two lists with their scores (near ties decided by float noise look like this), and
    the largest score difference at the same (user, rank)."""
    import polars as pl

    a = api.select(pl.col("user").cast(pl.String), pl.col("rank").cast(pl.Int32), "item", "score")
    c = cli.select(
        pl.col("user_id").alias("user"), pl.col("rank").cast(pl.Int32), pl.col("item_id"), pl.col("score")
    )
    j = a.join(c, on=["user", "rank"], how="full", coalesce=True).sort(["user", "rank"])
    differ = j.filter(pl.col("item").ne_missing(pl.col("item_id"))).get_column("user").unique().sort()
    shown = []
    for u in differ.head(5).to_list():
        rows = j.filter(pl.col("user") == u)
        shown.append(
            {
                "user": u,
                "api": rows.get_column("item").to_list(),
                "cli": rows.get_column("item_id").to_list(),
                "api_scores": [round(float(x), 7) for x in rows.get_column("score").to_list()],
                "cli_scores": [round(float(x), 7) for x in rows.get_column("score_right").to_list()],
            }
        )
    return {
        "identical": differ.len() == 0,
        "users_compared": j.get_column("user").n_unique(),
        "rows_api": a.height,
        "rows_cli": c.height,
        "users_differing": differ.len(),
        "differing": shown,
        "max_abs_score_diff_same_rank": float((j["score"] - j["score_right"]).abs().max() or 0.0),
    }


def breakdown(model: Any, data: Any, k: int, repeats: int) -> dict[str, Any]:
    """Each stage of `Model.recommend(data, k)` timed alone, over the batches it uses: the
    questions (users, histories), the model's `score`, `ranking.rank` (mask seen + top-k),
    the long form and the DataFrame (with the caller's id dtypes)."""
    import numpy as np
    import polars as pl

    from playnext.api.model import BATCH_USERS
    from playnext.ranking import rank

    art, names = model.artifact_, model.names_
    wall: dict[str, list[float]] = {"questions": [], "score": [], "rank": [], "frame": []}
    cpu: dict[str, list[float]] = {s: [] for s in wall}
    for rep in range(repeats + 1):  # the first pass warms up
        t = {s: 0.0 for s in wall}
        c = {s: 0.0 for s in wall}

        def clock(stage: str, since: tuple[float, float], t: dict = t, c: dict = c) -> tuple[float, float]:
            now = (time.perf_counter(), time.process_time())
            t[stage] += now[0] - since[0]
            c[stage] += now[1] - since[1]
            return now

        now = (time.perf_counter(), time.process_time())
        ext, model_users, hist = model._questions(data, None, "raise")
        now = clock("questions", now)
        parts = []
        for lo in range(0, len(ext), BATCH_USERS):
            rows = np.arange(lo, min(lo + BATCH_USERS, len(ext)))
            h = hist.take(rows)
            now = clock("questions", now)
            scores = art.model.score(model_users[rows], h)
            now = clock("score", now)
            lists = rank(scores, k, seen=h)
            now = clock("rank", now)
            row, rnk, item, score = lists.long()
            parts.append(
                pl.DataFrame(
                    {
                        names.user: ext.gather(row + lo),
                        "rank": rnk.astype(np.int32),
                        names.item: art.items.external.gather(item),
                        "score": score,
                    }
                )
            )
            now = clock("frame", now)
        df = pl.concat(parts)
        df = df.with_columns(
            names.ids(df.get_column(names.user), user=True), names.ids(df.get_column(names.item), user=False)
        )
        names.table(df)
        clock("frame", now)
        if rep > 0:
            for s in wall:
                wall[s].append(t[s])
                cpu[s].append(c[s])
    return {s: summary(wall[s], cpu[s]) for s in wall}


def wait_quiet(below: float, at_most: float) -> float:
    """Seconds waited (at most `at_most`) for the 1-minute load average to fall under `below`
    (0: no wait), so that training's own load and a neighbour's burst have passed."""
    t0 = time.perf_counter()
    while below > 0 and os.getloadavg()[0] >= below and time.perf_counter() - t0 < at_most:
        time.sleep(5)
    return time.perf_counter() - t0


def source_tree() -> dict[str, Any]:
    """Which playnext was measured: its folder, and its files changed since the commit (None
    outside a git checkout)."""
    import playnext

    src = Path(playnext.__file__).resolve().parent
    out = subprocess.run(
        ["git", "status", "--porcelain", "--", "."], capture_output=True, text=True, cwd=src, check=False
    )
    changed = [ln for ln in out.stdout.splitlines() if ln.strip()] if out.returncode == 0 else None
    return {"package": str(src), "uncommitted_files": None if changed is None else len(changed)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=None, help="holds ml-1m/ (default: $PLAYNEXT_DATA_DIR)")
    ap.add_argument("--epochs", type=int, default=1, help="training epochs (quality is not measured)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5, help="timed model.recommend calls")
    ap.add_argument("--cli-repeats", type=int, default=3, help="timed CLI / recommend_all runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model-dir", type=Path, default=None, help="a saved SASRec 64 wide (skips training)")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--quiet-load", type=float, default=0.0, help="before timing, wait for load1 < this")
    ap.add_argument("--quiet-wait-max", type=float, default=900.0, help="seconds to wait at most")
    ap.add_argument("--note", default="", help="recorded as it is (the machine's state, the code's source)")
    ap.add_argument("--tag", default="library_api")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import polars as pl
    import torch

    torch.set_num_threads(args.threads)

    import playnext as pn
    from benchmarks.common import FOLDERS, append_record, data_path, environment
    from playnext import batch
    from playnext.api.model import BATCH_USERS
    from playnext.data.readers import load_dataset

    load_before = os.getloadavg()
    path = args.data_dir / FOLDERS[DATASET] if args.data_dir else data_path(DATASET)
    t0 = time.perf_counter()
    data = pn.Dataset(load_dataset(DATASET, path))
    load_seconds = time.perf_counter() - t0
    print(f"{DATASET}: {data.n_users:,} users, {data.n_items:,} items ({load_seconds:.1f}s)", flush=True)

    train_seconds = None
    if args.model_dir is not None:  # a folder an earlier run saved: no training
        model = pn.load(args.model_dir)
        if model.recommender.name != "sasrec" or model.config.to_dict().get("dim") != PARAMS["dim"]:
            sys.exit(f"{args.model_dir}: not a SASRec {PARAMS['dim']} wide")
        print(f"sasrec dim 64: loaded from {args.model_dir}", flush=True)
    else:
        model = pn.SASRec(**PARAMS, epochs=args.epochs)
        t0 = time.perf_counter()
        model.fit(data)
        train_seconds = time.perf_counter() - t0
        print(f"sasrec dim 64: {args.epochs} epoch(s) in {train_seconds:.0f}s", flush=True)

    waited = wait_quiet(args.quiet_load, args.quiet_wait_max)
    load_timing = os.getloadavg()
    api, recs = timed(lambda: model.recommend(data, k=args.k), args.repeats)
    print(
        f"model.recommend: min {api['min']:.3f}s median {api['median']:.3f}s max {api['max']:.3f}s "
        f"({recs.height:,} rows)",
        flush=True,
    )
    stages = breakdown(model, data, args.k, args.repeats)
    print("  " + ", ".join(f"{s} {v['median']:.3f}s" for s, v in stages.items()), flush=True)

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "OMP_WAIT_POLICY": "PASSIVE"}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        model_dir = pn.save(model, data, work / "model")
        cli_runs, cli_cpu = [], []
        for i in range(args.cli_repeats):
            out = work / f"cli-{i}.parquet"
            cmd = [sys.executable, "-m", "playnext.cli", "recommend", "--model-dir", str(model_dir)]
            cmd += ["--all-users", "--k", str(args.k), "--out", str(out), "--json"]
            wall, cpu, stdout = run_child(cmd, env)
            cli_runs.append(wall)
            cli_cpu.append(cpu)
            inside = json.loads(stdout.strip().splitlines()[-1])
        cli = summary(cli_runs, cli_cpu)
        print(f"CLI (whole process): min {cli['min']:.3f}s median {cli['median']:.3f}s max {cli['max']:.3f}s")
        n = iter(range(1_000_000))
        job = batch.Job(k=args.k)
        in_proc, _ = timed(
            lambda: batch.recommend_all(model_dir, work / f"inproc-{next(n)}.parquet", job), args.cli_repeats
        )
        print(
            f"batch.recommend_all in process: min {in_proc['min']:.3f}s median {in_proc['median']:.3f}s "
            f"max {in_proc['max']:.3f}s",
            flush=True,
        )
        same = compare(recs, pl.read_parquet(out))
    load_after = os.getloadavg()
    print(f"same lists: {same['identical']} ({same['users_differing']} users differ)", flush=True)

    median = api["median"]
    append_record(
        "library_api",
        {
            "model": "sasrec",
            "dataset": DATASET,
            "seed": model.config.seed,
            "tag": args.tag,
            "n_users": data.n_users,
            "n_items": data.n_items,
            "k": args.k,
            "exclude_seen": True,
            "target_seconds": TARGET_SECONDS,
            "target_met": median <= TARGET_SECONDS,
            "target_note": "the median of the timed model.recommend calls against the target",
            "metrics": {
                "recommend_seconds": api,
                "recommend_breakdown_seconds": stages,
                "cli_process_seconds": cli,
                "cli_seconds_inside": inside["seconds"],  # the last child's own recommend_all time
                "recommend_all_in_process_seconds": in_proc,
                "rows": recs.height,
            },
            "same_lists_api_vs_cli": same,
            "params": {
                **model.config.to_dict(),
                "threads": args.threads,
                "api_batch_users": BATCH_USERS,  # users per model.recommend scoring call
                "batch_chunk_users": batch.chunk_size(job, data.n_items),  # users per CLI part
            },
            "train_seconds": train_seconds,
            "load_seconds": load_seconds,
            "trained_note": (
                f"{model.config.to_dict().get('epochs')} epoch(s) on the whole log: a speed measurement, "
                "not a quality one (no validation, no test)"
                + ("; loaded from a saved folder, not trained in this run" if args.model_dir else "")
            ),
            "calls": {
                "api": f"model.recommend(data, k={args.k})  # pn.SASRec(dim=64), polars, string ids",
                "cli": f"playnext recommend --model-dir M --all-users --k {args.k} --out recs.parquet",
                "in_process": f"playnext.batch.recommend_all(M, out, Job(k={args.k}))",
            },
            # a CLI run is a fresh process each time: no warm-up
            "repeats": {"api": args.repeats, "cli": args.cli_repeats, "warmup_api_and_in_process": 1},
            "load_average": {
                "before": list(load_before),
                "before_timing": list(load_timing),
                "after": list(load_after),
                "waited_for_quiet_seconds": round(waited, 1),
                "quiet_below": args.quiet_load,
            },
            "note": args.note,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "source": source_tree(),
            "environment": environment(),
        },
        key=("model", "dataset", "tag"),
    )


if __name__ == "__main__":
    main()
