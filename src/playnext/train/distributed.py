"""Data-parallel training on torch.distributed: NCCL on GPUs, gloo on CPUs.

Three ways in, one worker:

* one machine — `playnext train … --nproc N` calls `launch(N, argv)`, which runs
  `python -m torch.distributed.run --standalone --nproc-per-node N -m playnext.train.distributed …`;
* many machines — the same worker under torchrun on every node::

      torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \\
          --rdzv-endpoint node0:29400 --rdzv-id run1 \\
          -m playnext.train.distributed --model sasrec --dataset ml-1m --param epochs=200

* from Python (tests, benchmarks) — `run_local(fn, N, *args)` spawns N processes on a free
  loopback port and calls `fn(*args)` in each inside the process group.

Inside a group nothing else changes: `Recommender.fit` sees the group and the one training
loop wraps the network in DistributedDataParallel, shards every global batch across ranks,
splits validation across ranks and reduces its sums, and lets rank 0 alone write checkpoints
(atomically). Checkpoints hold global state only — weights, optimizer, step, epoch — and all
randomness is derived from (seed, epoch), so a run may resume on a different number of
processes. See docs/distributed.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from playnext.data.interactions import Interactions
from playnext.data.split import EvalSet
from playnext.errors import PlaynextError


def backend() -> str:
    """NCCL when this process has a GPU, else gloo."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def group() -> tuple[int, int]:
    """(rank, world_size) of the initialised process group, (0, 1) outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init(backend_name: str | None = None) -> tuple[int, int]:
    """Join the process group described by the torchrun environment (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR, MASTER_PORT); pins one GPU per local rank under NCCL."""
    name = backend_name or backend()
    if name == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(name, init_method="env://")
    return group()


def shutdown() -> None:
    """Leave the group. Garbage is collected first, as a precaution: gloo work objects freed
    during interpreter finalisation, after the group is gone, can abort a process with SIGABRT
    (pytorch#179291); none was seen to outlive training here."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def threads_per_process(nproc: int) -> int:
    """Intra-op threads per rank so that N ranks on one machine do not oversubscribe its cores."""
    return max(1, (os.cpu_count() or 1) // nproc)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_local(
    fn: Callable[..., Any],
    nproc: int,
    *args: Any,
    threads: int | None = None,
    backend_name: str | None = None,
) -> None:
    """Run `fn(*args)` in `nproc` spawned processes that form one process group on 127.0.0.1.

    `fn` must be importable (a module-level function) and its arguments picklable. A failure
    in any rank raises here (torch.multiprocessing.ProcessRaisedException).
    """
    port = free_port()
    mp.start_processes(
        _spawned,
        args=(fn, args, nproc, port, threads or threads_per_process(nproc), backend_name),
        nprocs=nproc,
        join=True,
        start_method="spawn",
    )


def _spawned(
    rank: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    nproc: int,
    port: int,
    threads: int,
    backend_name: str | None,
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(nproc),
        LOCAL_WORLD_SIZE=str(nproc),
    )
    torch.set_num_threads(threads)
    init(backend_name)
    try:
        fn(*args)
    finally:
        shutdown()


def fit_and_save(
    name: str, params: dict[str, Any], train: Interactions, valid: EvalSet | None, out_dir: str
) -> None:
    """Fit registry model `name` on this rank's share; rank 0 saves it and its training report
    (`report.json`) to `out_dir`, readable by every rank on return. A `run_local` target."""
    import dataclasses

    from playnext.models.nn import NeuralRecommender
    from playnext.models.registry import create

    model = create(name, **params).fit(train, valid)
    if group()[0] == 0:
        model.save(out_dir)
        report = model.report_ if isinstance(model, NeuralRecommender) else None
        doc = dataclasses.asdict(report) if report is not None else {}
        (Path(out_dir) / "report.json").write_text(json.dumps({**doc, "world_size": group()[1]}))
    if group()[1] > 1:
        dist.barrier()  # the saved model is there for every rank once this returns


# ---- command line ------------------------------------------------------------------------------
def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run the worker below on `nproc` local processes via torch.distributed.run; its exit code.

    torch.distributed.run (the elastic agent behind torchrun) picks a free port (--standalone)
    and tears every rank down when one fails. OMP_NUM_THREADS defaults to cores / nproc.
    """
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(threads_per_process(nproc)))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "playnext.train.distributed",
        *argv,
    ]
    return subprocess.run(cmd, env=env, check=False).returncode


def train_argv(
    *,
    model: str,
    dataset: str,
    path: Path | None = None,
    out_dir: Path | None = None,
    param: Sequence[str] | None = None,
    option: Sequence[str] | None = None,
    ties: str = "expected",
    exclude_seen: bool = True,
    as_json: bool = False,
    refit: bool = False,
) -> list[str]:
    """The worker's arguments for the options of `playnext train` (for its `--nproc`)."""
    argv = ["--model", model, "--dataset", dataset, "--ties", ties]
    argv += ["--path", str(path)] if path is not None else []
    argv += ["--out", str(out_dir)] if out_dir is not None else []
    for p in param or []:
        argv += ["--param", p]
    for o in option or []:
        argv += ["--option", o]
    argv += [] if exclude_seen else ["--no-exclude-seen"]
    argv += ["--json"] if as_json else []
    argv += ["--refit"] if refit else []
    return argv


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m playnext.train.distributed",
        description="`playnext train` as one rank of a torch.distributed job (run it under torchrun).",
    )
    ap.add_argument("--model", "-m", required=True)
    ap.add_argument("--dataset", "-d", required=True)
    ap.add_argument("--path", "-p", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--param", action="append", default=[])
    ap.add_argument("--option", "-o", action="append", default=[])
    ap.add_argument("--ties", default="expected")
    ap.add_argument("--exclude-seen", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--json", action="store_true", dest="as_json")
    ap.add_argument("--refit", action="store_true", help="retrain the chosen config on train + validation")
    ap.add_argument("--backend", choices=("gloo", "nccl"), help="default: nccl with a GPU, else gloo")
    return ap


def _train(args: argparse.Namespace) -> dict[str, Any]:
    from playnext.artifact import Artifact
    from playnext.cli import _kv  # one parser of key=value options for both entry points
    from playnext.data.readers import load_dataset
    from playnext.data.split import leave_one_out
    from playnext.evaluate.protocol import protocol_description, select_and_test
    from playnext.models.registry import get

    rank, world = group()
    fixed = _kv(args.param or [], "--param")
    cls = get(args.model)
    cls.config_class.from_dict(fixed)  # fail on bad parameters before loading anything
    options = _kv(args.option or [], "--option")
    if rank == 0:  # one rank downloads into the cache; the others read it afterwards
        options.setdefault("download", args.path is None and args.dataset != "synthetic")
        data = load_dataset(args.dataset, args.path, **options)
    dist.barrier()
    if rank != 0:
        data = load_dataset(args.dataset, args.path, **options)
    split = leave_one_out(data)
    covers = bool(fixed) and all(k in fixed for c in cls.search_space() for k in c)
    res = select_and_test(
        args.model,
        split,
        grid=[{}] if covers else None,
        fixed=fixed,
        ties=args.ties,
        exclude_seen=args.exclude_seen,
        distributed=True,
        refit=args.refit,
    )
    record: dict[str, Any] = {
        "dataset": args.dataset,
        "model": args.model,
        "protocol": protocol_description(split, args.ties, args.exclude_seen, args.refit),
        "metrics": res.test.metrics,
        "valid_metrics": res.valid_metrics,
        "params": res.model.config.to_dict(),
        "n_users_evaluated": res.test.n_users,
        "n_items": data.n_items,
        "train_seconds": res.train_seconds,
        "eval_seconds": res.test.seconds,
        "candidates": res.candidates,
        "world_size": world,
        "backend": dist.get_backend(),
    }
    if rank == 0 and args.out is not None:
        record["model_dir"] = str(Artifact.from_data(res.model, data, record).save(args.out))
    dist.barrier()  # no rank tears the group down while rank 0 is still saving
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """One rank of `playnext train`: rank 0 prints the record (one JSON object with --json)."""
    args = _parser().parse_args(argv)
    rank, _ = init(args.backend)
    try:
        record = _train(args)
    except PlaynextError as e:
        if rank == 0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        shutdown()
    if rank == 0:
        if args.as_json:
            sys.stdout.write(json.dumps(record) + "\n")
        else:
            shown = ("HR@10", "NDCG@10", "HR@50", "NDCG@50", "MRR", "Coverage@10")
            metrics = "  ".join(f"{k}={record['metrics'][k]:.4f}" for k in shown if k in record["metrics"])
            print(f"{args.model} on {args.dataset}, {record['world_size']} processes — test: {metrics}")
            if "model_dir" in record:
                print(f"saved to {record['model_dir']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
