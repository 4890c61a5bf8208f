"""Data-parallel training on torch.distributed: NCCL on GPUs, gloo on CPUs.

Three ways in, one command:

* one machine — `playnext train … --nproc N` calls `launch(N, argv)`, which runs
  `python -m torch.distributed.run --standalone --nproc-per-node N -m playnext.cli train …`;
* many machines — the same command under torchrun on every node::

      torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \\
          --rdzv-endpoint node0:29400 --rdzv-id run1 \\
          -m playnext.cli train --recipe sasrec --dataset ml-1m

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

import gc
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


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


def in_worker() -> bool:
    """Whether this process is one rank started by torchrun / torch.distributed.run."""
    return "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run `python <argv>` as `nproc` local ranks under torch.distributed.run; its exit code.

    `playnext train … --nproc N` relaunches itself this way (`argv` = `-m playnext.cli train …`
    without `--nproc`), and each rank then runs the one `train` command inside the group.
    torch.distributed.run (the elastic agent behind torchrun) picks a free port (--standalone)
    and tears every rank down when one fails. OMP_NUM_THREADS defaults to cores / nproc.
    """
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(threads_per_process(nproc)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *argv]
    return subprocess.run(cmd, env=env, check=False).returncode
