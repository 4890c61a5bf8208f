"""Training throughput of data-parallel SASRec: 1 process vs N gloo processes on one machine.

    python -m benchmarks.distributed [--users 2048] [--epochs 2] [--world-sizes 1,2] [--tag quick]

Each configuration trains SASRec through the one loop on the embedded synthetic world for a
fixed number of steps (users / global batch per epoch, no validation) in freshly spawned
processes, and reports the *last* epoch's throughput (the first pays for warm-up): training
samples (sequences) per second over all ranks. Configurations:

* world_size 1, 1 thread   — the per-core baseline;
* world_size 1, T threads  — one process using every core through intra-op parallelism;
* world_size N, T/N threads per rank — data-parallel DDP (gloo all-reduce over loopback).

The useful ratio is ws=N against ws=1 with the same total thread count: both use all cores,
only the way of splitting the work differs. Records go to benchmarks/results/distributed.json
with the load average, because on a shared machine other jobs take cores away.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import append_record, environment
from playnext.data.interactions import Interactions
from playnext.train import distributed as D

PARAMS: dict[str, Any] = {
    "dim": 64,
    "n_blocks": 2,
    "n_heads": 1,
    "max_len": 50,
    "dropout": 0.2,
    "lr": 1e-3,
    "batch_size": 128,  # global batch: 128 / world_size rows per rank
    "loss": "ce",
    "warmup_epochs": 0.0,
    "patience": 0,
    "verbose": False,
}


KEY = ("model", "dataset", "tag", "world_size", "threads_per_process")


def _worker(train: Interactions, params: dict[str, Any], out: str) -> None:
    from playnext.models.nn import NeuralRecommender
    from playnext.models.registry import create

    model = create("sasrec", **params).fit(train, None)
    rank, world = D.group()
    allreduce_ms = _allreduce_ms(model.n_params()) if world > 1 else 0.0
    if rank == 0:
        assert isinstance(model, NeuralRecommender) and model.report_ is not None
        doc = {
            "history": model.report_.history,
            "train_seconds": model.report_.train_seconds,
            "params": model.n_params(),
            "world_size": world,
            "allreduce_ms": allreduce_ms,
        }
        Path(out).write_text(json.dumps(doc))


def _allreduce_ms(n: int, repeats: int = 20) -> float:
    """Median time of one gloo all-reduce of a gradient-sized float32 tensor: the per-step
    communication floor (DDP buckets it, and overlaps it with backward where it can)."""
    import torch
    import torch.distributed as dist

    grad = torch.ones(n)
    times = []
    for _ in range(repeats):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(grad)
        times.append(time.perf_counter() - t0)
    return 1000 * sorted(times)[repeats // 2]


def measure(train: Interactions, world_size: int, threads: int, epochs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/report.json"
        load_before = os.getloadavg()[0]
        D.run_local(_worker, world_size, train, {**PARAMS, "epochs": epochs}, out, threads=threads)
        load_after = os.getloadavg()[0]
        doc = json.loads(Path(out).read_text())
    last = doc["history"][-1]
    return {
        "samples_per_second": float(last["samples_per_s"]),
        "epoch_seconds": float(last["seconds"]),
        "train_seconds": float(doc["train_seconds"]),
        "n_params": int(doc["params"]),
        "allreduce_ms": float(doc["allreduce_ms"]),
        "loadavg_1min": [load_before, load_after],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=2048, help="synthetic users = sequences per epoch")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--world-sizes", default="1,2")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="total threads per config")
    ap.add_argument("--tag", default="default")
    ap.add_argument("--note", default="", help="free text stored with the records (e.g. 'under load')")
    args = ap.parse_args()

    from playnext.data.readers import load_dataset

    train = load_dataset("synthetic", n_users=args.users, n_items=1500, seed=0)
    sizes = [int(w) for w in args.world_sizes.split(",")]
    configs = [(1, 1)] + [(w, max(1, args.threads // w)) for w in sizes]
    results: dict[tuple[int, int], dict[str, Any]] = {}
    for world, threads in dict.fromkeys(configs):
        t0 = time.perf_counter()
        res = measure(train, world, threads, args.epochs)
        results[(world, threads)] = res
        steps = -(-(len(train.sequences().lengths) // world) // -(-PARAMS["batch_size"] // world))
        record = {
            "model": "sasrec",
            "dataset": f"synthetic-{args.users}u",
            "tag": args.tag,
            "world_size": world,
            "threads_per_process": threads,
            "backend": "gloo",
            "metrics": {"samples_per_second": res["samples_per_second"]},
            "params": {**PARAMS, "epochs": args.epochs},
            "n_params": res["n_params"],
            "steps_per_epoch": steps,
            "train_seconds": res["train_seconds"],
            "epoch_seconds": res["epoch_seconds"],
            "step_seconds": res["epoch_seconds"] / steps,
            "gradient_allreduce_ms": res["allreduce_ms"],
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "wall_seconds": time.perf_counter() - t0,
            "loadavg_1min": res["loadavg_1min"],
            "note": args.note,
            "environment": environment(),
        }
        append_record(
            "distributed", record, key=("model", "dataset", "tag", "world_size", "threads_per_process")
        )
        load = "→".join(f"{x:.1f}" for x in res["loadavg_1min"])
        print(
            f"world_size={world} threads/rank={threads}: {res['samples_per_second']:.1f} samples/s "
            f"(epoch {res['epoch_seconds']:.2f}s, load {load})"
        )
    base = results[(1, 1)]["samples_per_second"]
    for (world, threads), res in results.items():
        print(f"  ws={world} x {threads} threads: {res['samples_per_second'] / base:.2f}x the 1x1 baseline")


if __name__ == "__main__":
    main()
