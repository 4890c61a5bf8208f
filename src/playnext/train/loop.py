"""The one training loop shared by every neural model.

A model hands the loop its network and a `Task` (batches, loss, scorer); the loop owns
everything else: optimizer, warm-up + decay schedule, gradient clipping, bf16 autocast,
early stopping on validation NDCG@10 with the best weights kept, a checkpoint per epoch and
resume. Randomness is re-seeded from (seed, epoch) at the start of every epoch, so a resumed
run is bit-identical to an uninterrupted one on the same device, and the caller's global
RNG state is restored afterwards (`torch.random.fork_rng`).

`rank` / `world_size` are threaded through so the same loop can run under torch.distributed
(`playnext.train.distributed`): the network is wrapped in DistributedDataParallel, each rank
trains on a disjoint strided shard of every global batch (`batch_size` stays the *global*
batch), each rank's loss is re-weighted by its share of the global batch's loss terms so the
averaged gradient is the single-process one, validation is split across ranks and reduced
exactly, and only rank 0 logs and writes checkpoints. With `world_size == 1` none of that runs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from playnext.config import Config
from playnext.data.interactions import Histories
from playnext.data.split import EvalSet
from playnext.errors import ConfigError
from playnext.io import atomic_write, sha256_file, write_json

log = logging.getLogger("playnext.train")

Batch = dict[str, torch.Tensor]
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine", "linear")
AMP = ("auto", "bf16", "off")
SELECT_METRIC = "NDCG@10"
# optional 0-d tensor in a training batch: multiplies the batch's mean loss before backward
# (length-bucketed batches weight their mean by their share of the positions); never a model input
LOSS_SCALE = "loss_scale"


@dataclasses.dataclass
class TrainConfig(Config):
    """Optimisation settings shared by every neural model (mixed into each model's config)."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    warmup_epochs: float = 0.0
    schedule: str = "cosine"
    # 0 = the decay ends with `epochs`; else it is laid out over this many epochs and training
    # stops at `epochs` part-way down it: a refit then follows the selection run's learning
    # rates up to the chosen epoch instead of a compressed schedule
    schedule_epochs: int = 0
    clip_norm: float = 1.0  # 0 = no clipping
    # 0 = off; else validation, the kept weights and the saved model are an exponential moving
    # average of the weights over the last ~1 / (1 - ema_decay) steps (WeightAverage)
    ema_decay: float = 0.0
    patience: int = 10  # evaluations without improvement before stopping; 0 = never stop early
    eval_every: int = 1
    max_minutes: float = 0.0  # wall-clock budget; the decay schedule ends with it (not bit-reproducible)
    device: str = "auto"
    amp: str = "auto"  # auto = bf16 on CUDA only; bf16 also on CPU (fast with AMX); off
    checkpoint_dir: str = ""  # "" = no checkpoints
    resume: bool = False
    verbose: bool = True

    def validate_training(self) -> None:
        def require(cond: bool, message: str) -> None:
            if not cond:
                raise ConfigError(message)

        require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        require(self.lr > 0 and math.isfinite(self.lr), f"lr must be > 0, got {self.lr}")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        require(
            self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"
        )
        require(self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        require(
            self.schedule_epochs == 0 or self.schedule_epochs >= self.epochs,
            f"schedule_epochs must be 0 or >= epochs ({self.epochs}), got {self.schedule_epochs}",
        )
        require(self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        require(self.clip_norm >= 0, f"clip_norm must be >= 0, got {self.clip_norm}")
        require(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        require(self.patience >= 0, f"patience must be >= 0, got {self.patience}")
        require(self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every}")
        require(self.max_minutes >= 0, f"max_minutes must be >= 0, got {self.max_minutes}")
        require(self.amp in AMP, f"amp must be one of {AMP}, got {self.amp!r}")
        require(
            self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"),
            f"device must be auto, cpu, cuda[:n] or mps, got {self.device!r}",
        )
        require(not self.resume or bool(self.checkpoint_dir), "resume=True needs a checkpoint_dir")


# fields that may differ between an interrupted run and its resumption
RUN_ONLY_FIELDS = frozenset({"resume", "verbose", "checkpoint_dir", "device", "max_minutes"})


class Task(Protocol):
    """What a model gives the loop."""

    def train_batches(
        self, rng: np.random.Generator, batch_size: int, rank: int, world_size: int
    ) -> Iterator[Batch]: ...

    def steps_per_epoch(self, batch_size: int, world_size: int) -> int: ...

    def train_loss(self, batch: Batch) -> torch.Tensor: ...

    def score(self, users: np.ndarray, history: Histories) -> torch.Tensor: ...


def loss_terms(task: Task, batch: Batch) -> int:
    """How many terms `task.train_loss(batch)` averages over: its optional `loss_terms(batch)`,
    else the batch's rows. Distributed training weights each rank's mean loss by this."""
    own = getattr(task, "loss_terms", None)
    return int(own(batch)) if own is not None else len(next(iter(batch.values())))


class TaskLoss(nn.Module):
    """`task.train_loss` as a module's forward, so DistributedDataParallel sees the forward pass
    (it only all-reduces gradients of a backward that follows a call of the wrapped module)."""

    def __init__(self, net: nn.Module, task: Task) -> None:
        super().__init__()
        self.net = net  # registered so DDP finds (and syncs) the parameters train_loss uses
        self.task = task

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.task.train_loss(batch)


class WeightAverage:
    """An exponential moving average of the trainable weights (Polyak averaging).

    Why: once validation plateaus, one step's weights sit somewhere in the optimiser's noise, and
    which epoch scores best is partly luck; the average over the last ~1 / (1 - decay) steps is a
    smoother point and a steadier choice. The decay ramps up as (1 + t) / (10 + t) so the average
    is not anchored to the random initial weights. It is swapped into the live network for
    scoring (a model's scorer reads that network), not kept as a copy of the module.
    """

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.named = [(k, p) for k, p in net.named_parameters() if p.requires_grad and p.is_floating_point()]
        self.shadow = [p.detach().clone() for _, p in self.named]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, (_, p) in zip(self.shadow, self.named, strict=True):
            avg.lerp_(p.detach(), 1.0 - decay)

    @contextmanager
    @torch.no_grad()
    def applied(self) -> Iterator[None]:
        """The averaged weights in the network for the block, the live ones restored after."""
        live = [p.detach().clone() for _, p in self.named]
        self.copy_to_net()
        try:
            yield
        finally:
            for (_, p), value in zip(self.named, live, strict=True):
                p.copy_(value)

    @torch.no_grad()
    def copy_to_net(self) -> None:
        for avg, (_, p) in zip(self.shadow, self.named, strict=True):
            p.copy_(avg)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: avg for avg, (k, _) in zip(self.shadow, self.named, strict=True)}

    @torch.no_grad()
    def load(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        for avg, (k, _) in zip(self.shadow, self.named, strict=True):
            avg.copy_(tensors[k])
        self.updates = updates


@dataclasses.dataclass
class TrainReport:
    epochs: int = 0
    best_epoch: int = -1
    best_score: float = float("-inf")
    stopped_early: bool = False
    train_seconds: float = 0.0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        return self.train_seconds / max(1, self.epochs)


def resolve_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    return _best_device()


def load_device(name: str) -> torch.device:
    """Where a saved model runs: its configured device when this machine has it, else the best
    one here, so a model trained on a GPU box loads on a laptop and vice versa."""
    device = torch.device(name) if name != "auto" else _best_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        return _best_device()
    if device.type == "mps" and not torch.backends.mps.is_available():
        return _best_device()
    return device


def _best_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_for(device: torch.device, amp: str) -> AbstractContextManager[Any]:
    use = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if use and device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def lr_factor(step: int, warmup: int, total: int, schedule: str, time_fraction: float = 0.0) -> float:
    """Linear warm-up over `warmup` steps, then constant / cosine / linear decay to 0 at `total`.

    With a time budget, decay progress is the larger of the step and the time fraction, so the
    schedule finishes when the budget does instead of being cut off at a high learning rate.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, max((step - warmup) / max(1, total - warmup), time_fraction))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def train(
    net: nn.Module,
    task: Task,
    cfg: TrainConfig,
    *,
    seed: int,
    valid: EvalSet | None,
    n_items: int,
    fingerprint: dict[str, Any],
    rank: int = 0,
    world_size: int = 1,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainReport:
    """Train `net` in place; on return it holds the best-on-validation weights (or the last)."""
    device = resolve_device(cfg.device)
    if world_size > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # the launcher set one GPU per rank
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        return _train(
            net, task, cfg, seed, valid, n_items, fingerprint, rank, world_size, on_epoch_end, device
        )


def _train(
    net: nn.Module,
    task: Task,
    cfg: TrainConfig,
    seed: int,
    valid: EvalSet | None,
    n_items: int,
    fingerprint: dict[str, Any],
    rank: int,
    world_size: int,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None,
    device: torch.device,
) -> TrainReport:
    from playnext.evaluate.protocol import evaluate  # evaluate imports nothing from train

    lead = rank == 0
    distributed = world_size > 1
    if distributed and not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(f"world_size={world_size} needs an initialised torch.distributed process group")
    net.to(device)
    opt, params = make_optimizer(net, cfg)
    if distributed and isinstance(opt, Optimizers):
        raise ConfigError(
            "sparse embeddings train in one process; on many GPUs shard the table (docs/distributed.md)"
        )
    # each rank takes a 1/world_size strided share of every global batch of cfg.batch_size rows
    local_batch = -(-cfg.batch_size // world_size)
    ddp: nn.Module | None = None
    if distributed:
        ids = [device.index] if device.type == "cuda" else None
        # static_graph: the set of parameters a loss uses is fixed per model, but not always all
        # of them (HSTU leaves some unused); DDP learns the set in the first step, then no cost
        ddp = DistributedDataParallel(TaskLoss(net, task), device_ids=ids, static_graph=True)
    steps = task.steps_per_epoch(local_batch, world_size)
    total = steps * (cfg.schedule_epochs or cfg.epochs)
    warmup = round(cfg.warmup_epochs * steps)
    report = TrainReport()
    best: dict[str, torch.Tensor] | None = None
    ema = WeightAverage(net, cfg.ema_decay) if cfg.ema_decay > 0 else None
    bad_evals = 0
    step = 0
    start_epoch = 0
    ckpt = Checkpointer(Path(cfg.checkpoint_dir), fingerprint) if cfg.checkpoint_dir else None
    if ckpt is not None and cfg.resume:
        loaded = ckpt.load()
        if loaded is not None:
            meta, tensors = loaded
            net.load_state_dict(_strip(tensors, "model/"))
            best_t = _strip(tensors, "best/")
            best = best_t or None
            _load_optimizer(opt, _strip(tensors, "optim/"))
            if ema is not None:
                ema.load(
                    {k: v.to(device) for k, v in _strip(tensors, "ema/").items()}, int(meta["ema_updates"])
                )
            step, start_epoch, bad_evals = int(meta["step"]), int(meta["epoch"]), int(meta["bad_evals"])
            report = TrainReport(**meta["report"])
            if lead:
                log.info("resuming from %s at epoch %d", ckpt.directory, start_epoch + 1)
            if meta.get("finished"):
                start_epoch = cfg.epochs
    elif ckpt is not None and lead:
        ckpt.clear()

    show = cfg.verbose and lead and sys.stderr.isatty()
    progress = _progress(show)
    t_start = time.perf_counter() - report.train_seconds
    with progress:
        bar = progress.add_task("train", total=steps, info="") if show else None
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            torch.manual_seed(_torch_seed(seed, epoch, rank))  # dropout; global state restored by fork_rng
            rng = np.random.default_rng([seed, epoch])  # same shuffle on every rank, then sharded
            net.train()
            loss_sum, n_batches, n_samples = 0.0, 0, 0
            if bar is not None:
                progress.reset(bar, total=steps, description=f"epoch {epoch + 1}/{cfg.epochs}")
            for batch in task.train_batches(rng, local_batch, rank, world_size):
                scale = batch.pop(LOSS_SCALE, None)
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                if ddp is not None:
                    loss, weighted, budget = _ddp_step(ddp, task, batch, cfg, device, t_start, scale)
                    if not math.isfinite(budget):
                        raise FloatingPointError(f"loss became non-finite at epoch {epoch + 1}, step {step}")
                    for g in opt.param_groups:
                        g["lr"] = cfg.lr * lr_factor(step, warmup, total, cfg.schedule, budget)
                    opt.zero_grad(set_to_none=True)
                    weighted.backward()  # DDP averages the re-weighted gradients: the global-batch mean
                else:
                    elapsed = time.perf_counter() - t_start
                    budget = elapsed / (60 * cfg.max_minutes) if cfg.max_minutes else 0.0
                    for g in opt.param_groups:
                        g["lr"] = cfg.lr * lr_factor(step, warmup, total, cfg.schedule, budget)
                    with autocast_for(device, cfg.amp):
                        loss = task.train_loss(batch)
                    if not torch.isfinite(loss):
                        where = f"epoch {epoch + 1}, step {step}"
                        raise FloatingPointError(f"loss became {loss.item()} at {where}")
                    opt.zero_grad(set_to_none=True)
                    (loss if scale is None else loss * scale.to(device)).backward()
                if cfg.clip_norm > 0:
                    nn.utils.clip_grad_norm_(params, cfg.clip_norm)
                opt.step()
                if ema is not None:
                    ema.update()
                step += 1
                n_batches += 1
                n_samples += len(next(iter(batch.values())))
                loss_sum += float(loss.detach())
                if bar is not None:
                    rate = n_samples / max(1e-9, time.perf_counter() - t0)
                    progress.update(
                        bar, advance=1, info=f"loss {loss_sum / n_batches:.4f}  {rate:,.0f} samples/s"
                    )
            seconds = time.perf_counter() - t0
            out_of_time = cfg.max_minutes > 0 and time.perf_counter() - t_start > 60 * cfg.max_minutes
            if distributed:  # global loss / throughput, and one stop decision for every rank
                totals = torch.tensor(
                    [loss_sum, n_batches, n_samples, seconds, float(out_of_time)],
                    dtype=torch.float64,
                    device=device,
                )
                dist.all_reduce(totals)
                loss_sum, n_batches, n_samples = float(totals[0]), int(totals[1]), int(totals[2])
                seconds, out_of_time = float(totals[3]) / world_size, bool(totals[4] > 0)
            logs = {
                "epoch": float(epoch + 1),
                "loss": loss_sum / max(1, n_batches),
                "seconds": seconds,
                "samples_per_s": n_samples / max(1e-9, seconds),
            }
            last = epoch + 1 == cfg.epochs
            evaluate_now = (epoch + 1) % cfg.eval_every == 0 or last or out_of_time
            if valid is not None and (lead or distributed) and evaluate_now:
                net.eval()
                with ema.applied() if ema is not None else nullcontext():
                    # distributed: every rank scores a shard; the sums are all-reduced, so every
                    # rank gets the same score and takes the same early-stopping / best decision
                    score = evaluate(task.score, valid, n_items, ks=(10,), distributed=distributed).metrics[
                        SELECT_METRIC
                    ]
                    logs["valid_" + SELECT_METRIC] = score
                    if score > report.best_score:
                        report.best_score, report.best_epoch, bad_evals = score, epoch + 1, 0
                        best = {k: v.detach().clone() for k, v in net.state_dict().items()}
                    else:
                        bad_evals += 1
            report.epochs = epoch + 1
            report.train_seconds = time.perf_counter() - t_start
            report.history.append(logs)
            stop = cfg.patience > 0 and bad_evals >= cfg.patience
            report.stopped_early = stop
            if lead:
                log.info(
                    "epoch %d/%d  %s",
                    epoch + 1,
                    cfg.epochs,
                    "  ".join(f"{k}={v:.4g}" for k, v in logs.items() if k != "epoch"),
                )
            if ckpt is not None and lead:
                ckpt.save(
                    epoch + 1,
                    net,
                    best,
                    opt,
                    {
                        "step": step,
                        "epoch": epoch + 1,
                        "bad_evals": bad_evals,
                        "ema_updates": ema.updates if ema is not None else 0,
                        "finished": stop or last or out_of_time,
                        "report": dataclasses.asdict(report),
                    },
                    ema.tensors() if ema is not None else None,
                )
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, logs)
            if stop or out_of_time:
                break
    if best is not None:
        net.load_state_dict(best)
    elif ema is not None:
        ema.copy_to_net()
    net.eval()
    return report


class Optimizers:
    """Dense Adam(W) plus SparseAdam for embedding tables with sparse gradients, stepped as one.

    A large catalog's table gets a sparse gradient (only the rows a batch touched); dense Adam
    would read and write every row's moments on every step — 10M × D each time."""

    def __init__(self, dense: torch.optim.Optimizer, sparse: torch.optim.SparseAdam) -> None:
        self.parts: list[torch.optim.Optimizer] = [dense, sparse]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for o in self.parts for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.parts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.parts:
            o.step()

    def _sizes(self) -> list[int]:
        return [sum(len(g["params"]) for g in o.param_groups) for o in self.parts]

    def state_dict(self) -> dict[str, Any]:
        """One numbering over both parts, the way a single optimizer numbers its parameters."""
        state: dict[int, Any] = {}
        offset = 0
        for o, n in zip(self.parts, self._sizes(), strict=True):
            for pid, st in o.state_dict()["state"].items():
                # SparseAdam keeps `step` as a Python int; a tensor survives the safetensors file
                state[offset + pid] = {k: torch.as_tensor(v) for k, v in st.items()}
            offset += n
        return {"state": state}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        offset = 0
        for o, n in zip(self.parts, self._sizes(), strict=True):
            own = o.state_dict()
            part = {pid - offset: dict(st) for pid, st in sd["state"].items() if offset <= pid < offset + n}
            if isinstance(o, torch.optim.SparseAdam):
                for st in part.values():
                    st["step"] = int(st["step"])
            own["state"] = part
            o.load_state_dict(own)
            offset += n


def make_optimizer(
    net: nn.Module, cfg: TrainConfig
) -> tuple[torch.optim.Optimizer | Optimizers, list[nn.Parameter]]:
    """The optimizer, and the parameters whose gradient norm is clipped (the dense ones)."""
    sparse_ids = {id(m.weight) for m in net.modules() if isinstance(m, nn.Embedding) and m.sparse}
    params = [p for p in net.parameters() if p.requires_grad and id(p) not in sparse_ids]
    sparse = [p for p in net.parameters() if p.requires_grad and id(p) in sparse_ids]
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    dense = opt_cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if not sparse:
        return dense, params
    return Optimizers(dense, torch.optim.SparseAdam(sparse, lr=cfg.lr)), params


def _torch_seed(seed: int, epoch: int, rank: int) -> int:
    """Dropout seed of one epoch: (seed, epoch) on rank 0, a distinct stream on other ranks."""
    if rank == 0:
        return seed * 1_000_003 + epoch
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def _ddp_step(
    ddp: nn.Module,
    task: Task,
    batch: Batch,
    cfg: TrainConfig,
    device: torch.device,
    t_start: float,
    scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Forward one local batch under DDP; returns (local mean loss, the loss to back-propagate,
    the time-budget fraction every rank agrees on — NaN if any rank's loss is not finite).

    One all-reduce carries the global batch's loss-term count, a non-finite flag and the elapsed
    time, so every rank raises together and sets the same learning rate (a per-rank clock would
    let the replicas drift apart, DDP syncs gradients, not parameters).
    """
    with autocast_for(device, cfg.amp):
        loss = ddp(batch)
    terms = loss_terms(task, batch)
    bad = 0.0 if bool(torch.isfinite(loss)) else 1.0
    stats = torch.tensor([terms, bad, time.perf_counter() - t_start], dtype=torch.float64, device=device)
    dist.all_reduce(stats)
    world_size = dist.get_world_size()
    if float(stats[1]) > 0:
        return loss, loss, float("nan")
    # DDP divides the summed gradients by world_size: weight = this rank's share of the terms;
    # a LOSS_SCALE already is the batch's terms over the rank's mean per batch, so the average
    # over ranks is again the sum of position losses over the expected global batch's terms
    if scale is not None:
        weighted = loss * scale.to(device)
    else:
        weighted = loss * (terms * world_size / max(1.0, float(stats[0])))
    budget = float(stats[2]) / world_size / (60 * cfg.max_minutes) if cfg.max_minutes else 0.0
    return loss, weighted, budget


def _progress(show: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        disable=not show,
        transient=False,
    )


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _load_optimizer(opt: torch.optim.Optimizer | Optimizers, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        pid, name = key.split("/", 1)
        state.setdefault(int(pid), {})[name] = value
    sd = opt.state_dict()
    sd["state"] = state
    opt.load_state_dict(sd)


class Checkpointer:
    """`epoch-NNNN.safetensors` (model, best, averaged and optimizer tensors) + `checkpoint.json`.

    The json is written last and names the weights file with its SHA-256, so the json always
    points at a complete checkpoint; a crash mid-write leaves the previous one usable.
    """

    def __init__(self, directory: Path, fingerprint: dict[str, Any]) -> None:
        self.directory = directory
        self.fingerprint = json.loads(json.dumps(fingerprint))  # normalise tuples etc.

    @property
    def index(self) -> Path:
        return self.directory / "checkpoint.json"

    def clear(self) -> None:
        self.index.unlink(missing_ok=True)
        for p in self.directory.glob("epoch-*.safetensors"):
            p.unlink()

    def save(
        self,
        epoch: int,
        net: nn.Module,
        best: dict[str, torch.Tensor] | None,
        opt: torch.optim.Optimizer | Optimizers,
        meta: dict[str, Any],
        ema: dict[str, torch.Tensor] | None = None,
    ) -> None:
        tensors = {f"model/{k}": v for k, v in net.state_dict().items()}
        tensors.update({f"best/{k}": v for k, v in (best or {}).items()})
        tensors.update({f"ema/{k}": v for k, v in (ema or {}).items()})
        for pid, st in opt.state_dict()["state"].items():
            tensors.update({f"optim/{pid}/{k}": v for k, v in st.items() if isinstance(v, torch.Tensor)})
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        name = f"epoch-{epoch:04d}.safetensors"
        atomic_write(self.directory / name, lambda p: save_file(tensors, str(p)))
        digest = sha256_file(self.directory / name)
        doc = {**meta, "weights": name, "sha256": digest, "fingerprint": self.fingerprint}
        write_json(self.index, doc)
        for p in self.directory.glob("epoch-*.safetensors"):
            if p.name != name:
                p.unlink(missing_ok=True)

    def load(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """The last complete checkpoint, None if there is none; ConfigError if it is unusable."""
        if not self.index.exists():
            return None
        hint = "delete the folder or train with resume=False"
        try:
            meta = json.loads(self.index.read_text())
            weights = self.directory / str(meta["weights"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ConfigError(f"{self.index}: corrupt checkpoint index ({e}); {hint}") from None
        if meta.get("fingerprint") != self.fingerprint:
            raise ConfigError(f"{self.index}: checkpoint is from another model, config or dataset; {hint}")
        if not weights.exists():
            raise ConfigError(f"{weights}: checkpoint weights missing; {hint}")
        if sha256_file(weights) != meta.get("sha256"):
            raise ConfigError(f"{weights}: corrupt checkpoint (SHA-256 mismatch); {hint}")
        try:
            tensors = load_file(str(weights))
        except Exception as e:  # safetensors raises several types for corrupt files
            raise ConfigError(f"{weights}: corrupt checkpoint ({e}); {hint}") from None
        return meta, tensors
