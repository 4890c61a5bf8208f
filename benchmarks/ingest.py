"""Streaming ingestion of a 30M-interaction log into a prepared (memory-mapped) dataset.

    python -m benchmarks.ingest [--interactions 30000000] [--format csv|parquet] [--workdir /tmp/...]

The log is the synthetic world generated in user blocks and appended to one CSV (or Parquet)
file, so it is never whole in memory either. Only `prepare` on that file is timed; it runs in
a child process, so the peak RSS reported (`getrusage(RUSAGE_CHILDREN)`) is the ingest's own.
Targets: peak RSS < 4 GiB, < 180 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from playnext.data.store import open_store, prepare, synthetic_blocks

GIB = 1 << 30


def write_log(path: Path, n: int, n_items: int, seed: int, fmt: str) -> float:
    """The synthetic log, block by block, into one file; returns the seconds it took."""
    t0 = time.perf_counter()
    tmp = path.with_suffix(path.suffix + ".part")
    blocks = synthetic_blocks(n, n_items, 40.0, seed, 2_000_000)
    if fmt == "csv":
        with open(tmp, "wb") as f:
            for b, block in enumerate(blocks):
                block.write_csv(f, include_header=b == 0)
    else:
        import pyarrow.parquet as pq

        writer: pq.ParquetWriter | None = None
        for block in blocks:
            table = block.to_arrow()
            writer = writer or pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table)
        assert writer is not None
        writer.close()
    os.replace(tmp, path)
    return time.perf_counter() - t0


def child(source: str, out: str) -> None:
    """The measured process: only the ingest."""
    stages: dict[str, float] = {}
    t0 = time.perf_counter()

    def progress(msg: str) -> None:
        stages[msg.split(" ")[0]] = round(time.perf_counter() - t0, 2)

    prepare(source, out, progress=progress, overwrite=True)
    print(json.dumps(stages))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--interactions", type=int, default=30_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", choices=("csv", "parquet"), default="csv")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/playnext-ingest"))
    ap.add_argument("--keep", action="store_true", help="keep the log and the prepared store")
    ap.add_argument("--child", nargs=2, metavar=("SOURCE", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    from benchmarks.common import append_record, environment  # torch: not in the measured child

    args.workdir.mkdir(parents=True, exist_ok=True)
    log = args.workdir / f"synthetic-{args.interactions}-{args.seed}.{args.format}"
    gen_seconds = None
    if not log.exists():
        gen_seconds = write_log(log, args.interactions, args.items, args.seed, args.format)
        print(f"wrote {log} ({log.stat().st_size / GIB:.2f} GiB) in {gen_seconds:.0f}s", flush=True)
    out = args.workdir / "store"
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.ingest", "--child", str(log), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # only child so far
    if proc.returncode != 0:
        sys.exit(f"ingest failed:\n{proc.stderr}")
    stages = json.loads(proc.stdout.strip().splitlines()[-1])
    store = open_store(out, verify=True)
    disk = sum(p.stat().st_size for p in out.iterdir())
    print(f"{len(store):,} interactions, {store.n_users:,} users, {store.n_items:,} items")
    print(
        f"prepare: {seconds:.1f}s, peak RSS {peak / GIB:.2f} GiB, store {disk / GIB:.2f} GiB; stages {stages}"
    )
    append_record(
        "ingest",
        {
            "model": "ingest",
            "dataset": f"synthetic-{args.interactions // 1_000_000}M-{args.format}",
            "seed": args.seed,
            "tag": "prepare",
            "metrics": {
                "seconds": seconds,
                "peak_rss_bytes": peak,
                "interactions_per_second": len(store) / seconds,
                "store_bytes": disk,
                "log_bytes": log.stat().st_size,
            },
            "params": {
                "interactions": args.interactions,
                "items": args.items,
                "format": args.format,
                "chunk_rows": 8_000_000,
                "stages_cumulative_seconds": stages,
                "log_generation_seconds": gen_seconds,
                "load_average_before": load_before,
                "polars_threads": pl.thread_pool_size(),
            },
            "train_seconds": 0.0,
            "interactions": len(store),
            "users": store.n_users,
            "items": store.n_items,
            "peak_rss_bytes": peak,
            "seconds": seconds,
            "targets": {"peak_rss_bytes": 4 * GIB, "seconds": 180},
            "environment": environment(),
        },
    )
    if not args.keep:
        shutil.rmtree(out)
        log.unlink()


if __name__ == "__main__":
    main()
