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
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from playnext.data.interactions import Histories
from playnext.errors import ConfigError
from playnext.train.averaging import WeightAverage
from playnext.train.checkpoints import Checkpointer, strip_prefix
from playnext.train.config import SELECT_METRIC, TrainConfig
from playnext.train.device import autocast_for, resolve_device
from playnext.train.optim import Optimizers, load_optimizer_state, make_optimizer
from playnext.train.progress import progress_bar
from playnext.train.schedule import lr_factor

log = logging.getLogger("playnext.train")

Batch = dict[str, torch.Tensor]
# optional 0-d tensor in a training batch: multiplies the batch's mean loss before backward
# (length-bucketed batches weight their mean by their share of the positions); never a model input
LOSS_SCALE = "loss_scale"
Validate = Callable[[], float]


class Task(Protocol):
    """What a model gives the loop."""

    def train_batches(
        self, rng: np.random.Generator, batch_size: int, rank: int, world_size: int
    ) -> Iterator[Batch]: ...

    def steps_per_epoch(self, batch_size: int, world_size: int) -> int: ...

    def train_loss(self, batch: Batch) -> torch.Tensor: ...

    def loss_terms(self, batch: Batch) -> int:
        """How many terms `train_loss(batch)` averages over (rows, or positions with a target):
        distributed training weights each rank's mean loss by its share of the global count."""
        ...

    def score(self, users: np.ndarray, history: Histories) -> torch.Tensor: ...


class TaskLoss(nn.Module):
    """`task.train_loss` as a module's forward, so DistributedDataParallel sees the forward pass
    (it only all-reduces gradients of a backward that follows a call of the wrapped module)."""

    def __init__(self, net: nn.Module, task: Task) -> None:
        super().__init__()
        self.net = net  # registered so DDP finds (and syncs) the parameters train_loss uses
        self.task = task

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.task.train_loss(batch)


@dataclasses.dataclass
class TrainReport:
    """What one run of the loop did: its curve (`history`, one row an epoch, `elapsed` seconds
    since the start at its end; a budget-cut last epoch also has `fraction`, its share of the
    steps), the best validated epoch, and why and where it stopped: `stopped` is "epochs" (all
    done), "patience" (no better validation for `patience` evaluations) or "budget" (out of
    time, possibly mid-epoch); `stopped_at` = {"epoch", "step" (optimiser steps into that
    epoch), "steps" (of the epoch's), "seconds" (since the start, before the last validation)}."""

    epochs: int = 0
    best_epoch: int = -1
    best_score: float = float("-inf")
    stopped_early: bool = False
    train_seconds: float = 0.0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    stopped: str = ""
    stopped_at: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def seconds_per_epoch(self) -> float:
        return self.train_seconds / max(1, self.epochs)


def train(
    net: nn.Module,
    task: Task,
    cfg: TrainConfig,
    *,
    seed: int,
    validate: Validate | None,
    fingerprint: dict[str, Any],
    rank: int = 0,
    world_size: int = 1,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    started: float | None = None,
) -> TrainReport:
    """Train `net` in place; on return it holds the best-on-validation weights (or the last).
    `started` (a `time.perf_counter()` reading) is when the caller's fit began: the budget and
    `train_seconds` count its set-up (vocabularies, batches) too, since a user's minute does."""
    device = resolve_device(cfg.device)
    if world_size > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # the launcher set one GPU per rank
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        return _train(
            net, task, cfg, seed, validate, fingerprint, rank, world_size, on_epoch_end, device, started
        )


def _train(
    net: nn.Module,
    task: Task,
    cfg: TrainConfig,
    seed: int,
    validate: Validate | None,
    fingerprint: dict[str, Any],
    rank: int,
    world_size: int,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None,
    device: torch.device,
    started: float | None = None,
) -> TrainReport:
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
            net.load_state_dict(strip_prefix(tensors, "model/"))
            best_t = strip_prefix(tensors, "best/")
            best = best_t or None
            load_optimizer_state(opt, strip_prefix(tensors, "optim/"))
            if ema is not None:
                ema.load(
                    {k: v.to(device) for k, v in strip_prefix(tensors, "ema/").items()},
                    int(meta["ema_updates"]),
                )
            step, start_epoch, bad_evals = int(meta["step"]), int(meta["epoch"]), int(meta["bad_evals"])
            report = TrainReport(**meta["report"])
            if lead:
                log.info("resuming from %s at epoch %d", ckpt.directory, start_epoch + 1)
            if meta.get("finished"):  # a run stopped by its budget (even mid-epoch) is finished too
                start_epoch = cfg.epochs
    elif ckpt is not None and lead:
        ckpt.clear()

    bar = progress_bar(cfg.verbose and lead)
    t_start = min(started or math.inf, time.perf_counter()) - report.train_seconds
    budget_s = 60 * cfg.max_minutes  # 0 = no budget
    projected = not (budget_s > 0 and lead)  # the first epoch's length is projected once

    def forward_batch(batch: Batch, scale: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Forward one local batch: (mean loss, the loss to back-propagate, budget fraction)."""
        if ddp is not None:
            return _ddp_step(ddp, task, batch, cfg, device, t_start, scale)
        elapsed = time.perf_counter() - t_start
        budget = elapsed / (60 * cfg.max_minutes) if cfg.max_minutes else 0.0
        with autocast_for(device, cfg.amp):
            loss = task.train_loss(batch)
        if not torch.isfinite(loss):
            return loss, loss, float("nan")
        return loss, (loss if scale is None else loss * scale.to(device)), budget

    def optimiser_step(
        forward: Any, batch: Batch, scale: torch.Tensor | None, step: int, where: str
    ) -> tuple[torch.Tensor, float]:
        """One optimiser step, with or without DDP: forward, the lr for this step, backward
        (under DDP the re-weighted gradients average to the global-batch mean), clip, step, EMA.
        Returns the loss and the budget fraction used before the step (every rank's same one)."""
        loss, weighted, budget = forward(batch, scale)
        if not math.isfinite(budget):
            shown = loss.item() if not bool(torch.isfinite(loss)) else "non-finite on another rank"
            raise FloatingPointError(f"loss became {shown} at {where}")
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(step, warmup, total, cfg.schedule, budget)
        opt.zero_grad(set_to_none=True)
        weighted.backward()
        if cfg.clip_norm > 0:
            nn.utils.clip_grad_norm_(params, cfg.clip_norm)
        opt.step()
        if ema is not None:
            ema.update()
        return loss, budget

    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            torch.manual_seed(_torch_seed(seed, epoch, rank))  # dropout; global state restored by fork_rng
            rng = np.random.default_rng([seed, epoch])  # same shuffle on every rank, then sharded
            net.train()
            loss_sum, n_batches, n_samples = 0.0, 0, 0
            cut = False  # out of time mid-epoch: the epoch stops here, then validates
            bar.start(steps, f"epoch {epoch + 1}/{cfg.epochs}")
            for batch in task.train_batches(rng, local_batch, rank, world_size):
                scale = batch.pop(LOSS_SCALE, None)
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                where = f"epoch {epoch + 1}, step {step}"
                loss, used = optimiser_step(forward_batch, batch, scale, step, where)
                step += 1
                n_batches += 1
                n_samples += len(next(iter(batch.values())))
                loss_sum += float(loss.detach())
                now = time.perf_counter()
                rate = n_samples / max(1e-9, now - t0)
                bar.advance(f"loss {loss_sum / n_batches:.4f}  {rate:,.0f} samples/s")
                # the clock after every step: stop when the next step would end past the budget
                # (this epoch's mean step as its length); under DDP the fraction all ranks agreed on
                # (a step late)
                step_s = (now - t0) / n_batches
                cut = budget_s > 0 and (used >= 1.0 if distributed else now - t_start + step_s >= budget_s)
                if not projected and (n_batches >= PROJECT_AFTER or cut):
                    projected = True
                    _warn_overrun((now - t0) / n_batches * steps, cfg.max_minutes)
                if cut and n_batches < steps:
                    report.stopped_at = _where(epoch, n_batches, steps, now - t_start)
                    break
                cut = False  # out of time at an epoch's last step: a whole epoch, stopped after it
            done = n_batches  # this rank's steps in this epoch (n_batches becomes the global count)
            seconds = time.perf_counter() - t0
            out_of_time = cut or (budget_s > 0 and time.perf_counter() - t_start > budget_s)
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
            if cut:
                logs["fraction"] = done / max(1, steps)
            last = epoch + 1 == cfg.epochs
            evaluate_now = (epoch + 1) % cfg.eval_every == 0 or last or out_of_time
            if validate is not None and (lead or distributed) and evaluate_now:
                net.eval()
                with ema.applied() if ema is not None else nullcontext():
                    # distributed: every rank scores a shard; the sums are all-reduced, so every
                    # rank gets the same score and takes the same early-stopping / best decision
                    score = validate()
                    logs["valid_" + SELECT_METRIC] = score
                    if score > report.best_score:
                        report.best_score, report.best_epoch, bad_evals = score, epoch + 1, 0
                        best = {k: v.detach().clone() for k, v in net.state_dict().items()}
                    else:
                        bad_evals += 1
            report.epochs = epoch + 1
            report.train_seconds = time.perf_counter() - t_start
            logs["elapsed"] = report.train_seconds
            report.history.append(logs)
            stop = cfg.patience > 0 and bad_evals >= cfg.patience
            report.stopped_early = stop
            if cut or stop or out_of_time or last:
                report.stopped = (
                    "budget"
                    if cut or (out_of_time and not stop and not last)
                    else ("patience" if stop else "epochs")
                )
                if not cut:
                    report.stopped_at = _where(epoch, done, steps, report.train_seconds)
            if lead:
                log.info("%s", _epoch_line(report, logs, cfg, done, steps))
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
    finally:
        bar.close()
    if best is not None:
        net.load_state_dict(best)
    elif ema is not None:
        ema.copy_to_net()
    net.eval()
    return report


PROJECT_AFTER = 20  # batches timed before the first epoch's length is projected against the budget


def _where(epoch: int, step: int, steps: int, seconds: float) -> dict[str, float]:
    return {"epoch": epoch + 1, "step": step, "steps": steps, "seconds": round(seconds, 3)}


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _warn_overrun(epoch_seconds: float, max_minutes: float) -> None:
    """One line at the start when the first epoch alone would outlast the budget."""
    if epoch_seconds > 60 * max_minutes:
        log.warning(
            "one epoch ≈ %s > the %g-minute budget: training stops at the budget mid-epoch",
            _duration(epoch_seconds),
            max_minutes,
        )


def _epoch_line(report: TrainReport, logs: dict[str, float], cfg: TrainConfig, done: int, steps: int) -> str:
    """`epoch 3/200  loss 5.1234  valid NDCG@10 0.0312  41.2 s  ETA 6.1 min (budget)`."""
    parts = [f"epoch {int(logs['epoch'])}/{cfg.epochs}", f"loss {logs['loss']:.4f}"]
    if "valid_" + SELECT_METRIC in logs:
        parts.append(f"valid {SELECT_METRIC} {logs['valid_' + SELECT_METRIC]:.4f}")
    parts.append(_duration(logs["seconds"]))
    if report.stopped == "budget" and "fraction" in logs:
        parts.append(f"stopped by the budget at step {done}/{steps}")
    elif report.stopped:
        parts.append(f"stopped: {report.stopped}")
    else:
        left = (cfg.epochs - report.epochs) * report.train_seconds / max(1, report.epochs)
        budget_left = 60 * cfg.max_minutes - report.train_seconds if cfg.max_minutes else math.inf
        parts.append(f"ETA {_duration(min(left, budget_left))}" + (" (budget)" if budget_left < left else ""))
    return "  ".join(parts)


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
    terms = task.loss_terms(batch)
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
