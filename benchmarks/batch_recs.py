"""Every ML-1M user's top-100 to Parquet (`playnext recommend --all-users`): seconds and peak RSS.

    python -m benchmarks.batch_recs [--model-dir DIR] [--minutes 3] [--k 100] [--workdir DIR]

Without `--model-dir`, SASRec's default recipe is trained on ML-1M (`$PLAYNEXT_DATA_DIR/ml-1m`)
within `--minutes` through `playnext.experiment.run`, the path of `playnext train`, and saved
to the work folder. The batch run itself is the CLI in a child process, so its time includes
loading the model folder and its peak RSS (`getrusage(RUSAGE_CHILDREN)`) is its own. Writes
one record to benchmarks/results/batch_recs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from benchmarks.common import append_record, data_path, environment, trained_fields

DATASET = "ml-1m"
LOAD_ONLY = "import sys, playnext.cli, playnext.batch; playnext.batch.Artifact.load(sys.argv[1])"


def child_peak_kib(cmd: list[str]) -> int:
    """Peak RSS (KiB) of one child process, from its own resource usage (`os.wait4`)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{cmd}: exit {proc.returncode}")
    return int(usage.ru_maxrss)


def quick_artifact(model: str, minutes: float, out: Path, overrides: dict[str, Any] | None = None) -> Path:
    """`model`'s default recipe on ML-1M within `minutes` (`playnext train --budget-minutes`),
    saved as a model folder whose artifact.json is the run's record."""
    from playnext import recipes
    from playnext.artifact import Artifact
    from playnext.data.readers import load_dataset
    from playnext.experiment import Plan, run

    data = load_dataset(DATASET, data_path(DATASET))
    plan = Plan.from_recipe(recipes.default_for(model), overrides=overrides or {}, budget_minutes=minutes)
    done = run(plan, data, dataset=DATASET)
    m = done.record["metrics"]
    print(
        f"{model}: test NDCG@10 {m['NDCG@10']:.4f}, trained {done.record['train_seconds']:.0f}s", flush=True
    )
    return Artifact.from_data(done.result.model, data, done.record).save(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=None, help="an existing model folder (else train)")
    ap.add_argument("--minutes", type=float, default=3.0, help="training budget when training")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--chunk-users", type=int, default=0, help="users per part (0 = automatic)")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--tag", default="batch_recs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        model_dir = args.model_dir or quick_artifact("sasrec", args.minutes, work / "model")
        info = json.loads((Path(model_dir) / "artifact.json").read_text())
        out = work / "recs.parquet"
        cmd = [sys.executable, "-m", "playnext.cli", "recommend", "--model-dir", str(model_dir)]
        cmd += ["--all-users", "--k", str(args.k), "--out", str(out), "--chunk-users", str(args.chunk_users)]
        t0 = time.perf_counter()
        proc = subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - t0
        # the largest of this process's waited-for children: the batch run (training spawns none)
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            sys.exit(f"batch run failed:\n{proc.stderr[-3000:]}")
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        # what the same child holds before scoring anyone: libraries and the model folder
        loaded_kib = child_peak_kib([sys.executable, "-c", LOAD_ONLY, str(model_dir)])
        meta = pq.read_metadata(out)
        size = out.stat().st_size
    rows, users = int(meta.num_rows), int(summary["users"])
    print(
        f"{rows:,} rows for {users:,} users in {seconds:.1f}s, peak RSS {peak_kib / 1024:.0f} MiB", flush=True
    )
    append_record(
        "batch_recs",
        {
            "model": info.get("model"),
            "dataset": info.get("dataset", DATASET),
            "seed": info.get("seed"),
            "tag": args.tag,
            "metrics": {
                "seconds": seconds,
                "peak_rss_mb": peak_kib / 1024,
                "loaded_rss_mb": loaded_kib / 1024,  # imports + model folder, no user scored
                "rows": rows,
                "users": users,
                "users_per_second": users / seconds,
                "file_bytes": size,
                "seconds_inside": summary["seconds"],  # without interpreter start and imports
            },
            "params": {
                "k": args.k,
                "exclude_seen": True,
                "chunk_users": args.chunk_users,
                "row_groups": meta.num_row_groups,
                "parts": summary["parts"],
                "command": f"playnext recommend --model-dir M --all-users --k {args.k} --out recs.parquet",
            },
            **trained_fields(info),
            "environment": environment(),
        },
    )


if __name__ == "__main__":
    main()
