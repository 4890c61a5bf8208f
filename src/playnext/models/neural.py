"""What every neural model shares: the config mix-in, and the fit / warm-start / save plumbing
that hands the work to the one training loop (`playnext.train.loop.train`).

A model supplies its network (`_build`), its training arrays and batches, the loss of a batch
and `_score`; everything else is here. Items are embedded with id + 1 (0 = padding); logits
are always over the real items 0..I-1.
"""

from __future__ import annotations

import dataclasses
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from playnext.config import require
from playnext.data.interactions import Interactions
from playnext.data.split import EvalSet
from playnext.evaluate.protocol import evaluate
from playnext.models.base import ModelConfig, Recommender
from playnext.models.parts.warm_start import grow_items, grow_users
from playnext.train import batches as B
from playnext.train.config import RUN_ONLY_FIELDS, SELECT_METRIC, TrainConfig
from playnext.train.device import load_device
from playnext.train.loop import Batch, TrainReport, train
from playnext.train.losses import LOSSES


@dataclasses.dataclass
class NeuralConfig(TrainConfig, ModelConfig):
    """Training settings (TrainConfig) plus what every neural model has: size, dropout, loss."""

    dim: int = 64
    dropout: float = 0.2
    loss: str = "ce"
    n_negatives: int = 128  # uniform negatives for sampled_softmax (shared per batch) / bce (per target)
    in_batch_negatives: bool = False  # sampled_softmax: also use the batch's other targets (logQ-corrected)

    def validate(self) -> None:
        self.validate_training()
        require(self.dim >= 1, f"dim must be >= 1, got {self.dim}")
        require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        require(self.loss in LOSSES, f"loss must be one of {LOSSES}, got {self.loss!r}")
        require(self.n_negatives >= 0, f"n_negatives must be >= 0, got {self.n_negatives}")
        require(self.loss != "bce" or self.n_negatives >= 1, "loss='bce' needs n_negatives >= 1")
        require(
            self.loss != "sampled_softmax" or self.n_negatives >= 1 or self.in_batch_negatives,
            "loss='sampled_softmax' needs n_negatives >= 1 or in_batch_negatives=True",
        )


class NeuralRecommender(Recommender):
    """Fits through `playnext.train.loop.train` (it is the loop's `Task`); saves the network's
    state dict.

    Subclasses build the network from the config and `n_items_` / `n_users_`, and provide
    training batches, the loss of one batch and `_score`.
    """

    config: NeuralConfig
    net_: nn.Module

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        # test / tooling hook called after each epoch's checkpoint, e.g. to simulate a crash
        self.on_epoch_end: Callable[[int, dict[str, float]], None] | None = None
        self.report_: TrainReport | None = None

    @abstractmethod
    def _build(self) -> nn.Module: ...

    def _new_net(self) -> nn.Module:
        """The network `_build` makes, with what the base class adds to every net (see overrides)."""
        return self._build()

    def _learn_vocab(self, train: Interactions) -> None:
        """What the network's shape depends on beyond the item count (event types); none here."""
        return None

    @abstractmethod
    def _prepare(self, train: Interactions) -> None:
        """Precompute the training arrays that `train_batches` slices."""

    @abstractmethod
    def _release(self) -> None:
        """Drop the training arrays once fitted."""

    # ---- the loop's Task ------------------------------------------------------------------------
    @abstractmethod
    def train_batches(
        self, rng: np.random.Generator, batch_size: int, rank: int, world_size: int
    ) -> Iterator[Batch]: ...

    @abstractmethod
    def steps_per_epoch(self, batch_size: int, world_size: int) -> int: ...

    @abstractmethod
    def train_loss(self, batch: Batch) -> torch.Tensor: ...

    def loss_terms(self, batch: Batch) -> int:
        """How many terms `train_loss(batch)` averages over (rows here); weights ranks under DDP."""
        return len(next(iter(batch.values())))

    # ---- warm start: the per-item (and per-user) tables, grown in place -------------------------
    warm_startable = True
    # state-dict keys of tables with one row per item after `leading` rows (1: the padding row)
    item_tables: ClassVar[dict[str, int]] = {"item_emb.weight": 1}
    # tables with one row per user (new users start as the mean user)
    user_tables: ClassVar[tuple[str, ...]] = ()

    def extend_items(self, init_from: Sequence[Sequence[int]]) -> None:
        """Grow every per-item tensor by `len(init_from)` rows, appended after the known items:
        row j is the mean of the known rows `init_from[j]` (of all known rows when empty), so a
        new item starts where its text or co-occurrence neighbours are; known rows are unchanged."""
        if self.n_items_ is None:
            raise RuntimeError(f"{self.name}: call fit() before extend_items()")
        n_old = self.n_items_
        if any(not 0 <= int(i) < n_old for nb in init_from for i in nb):
            raise ValueError(f"init_from names items outside the known 0..{n_old - 1}")
        state = {k: v.detach() for k, v in self.net_.state_dict().items()}
        state = grow_items(state, self.item_tables, init_from)
        self.n_items_ = n_old + len(init_from)
        self._rebuild(state)

    def extend_users(self, n_users: int) -> None:
        """Grow the per-user tables to `n_users` rows, new users starting as the mean user."""
        if self.n_users_ is None or n_users <= self.n_users_:
            return
        state = {k: v.detach() for k, v in self.net_.state_dict().items()}
        state = grow_users(state, self.user_tables, n_users)
        self.n_users_ = n_users
        self._rebuild(state)

    def _rebuild(self, state: dict[str, torch.Tensor]) -> None:
        device = self.device
        self.net_ = self._new_net()
        self.net_.load_state_dict(state)
        self.net_.to(device).eval()

    def fine_tune(self, train: Interactions, valid: EvalSet | None = None) -> Self:
        """Train on `train` from the current weights rather than a fresh network: the loop, the
        schedule and the budget are the usual ones, read from the (caller-adjusted) config."""
        if self.n_items_ is None:
            raise RuntimeError(f"{self.name}: call fit() before fine_tune()")
        if len(train) == 0:
            raise ValueError("cannot fine-tune on an empty interaction log")
        if train.n_items != self.n_items_:
            raise ValueError(
                f"train has {train.n_items} items, the model {self.n_items_}: extend_items first"
            )
        self.config.validate()
        self.extend_users(train.n_users)
        self.n_users_ = train.n_users
        self._fit(train, valid, start={k: v.detach().clone() for k, v in self.net_.state_dict().items()})
        return self

    # ---- fitting: the network, then the loop --------------------------------------------------
    def _fit(
        self, train_data: Interactions, valid: EvalSet | None, start: dict[str, torch.Tensor] | None = None
    ) -> None:
        cfg, started = self.config, time.perf_counter()  # the budget counts the set-up below
        if start is None:  # a warm start keeps its vocabularies: the network's shape depends on them
            self._learn_vocab(train_data)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.net_ = self._new_net()
        if start is not None:
            self.net_.load_state_dict(start)
        counts = train_data.item_counts()
        self.item_log_freq_ = torch.from_numpy(np.log((counts + 1.0) / (counts.sum() + len(counts)))).float()
        self._prepare(train_data)
        fingerprint = {
            "model": self.name,
            "config": {k: v for k, v in cfg.to_dict().items() if k not in RUN_ONLY_FIELDS},
            "data": [train_data.n_users, train_data.n_items, len(train_data)],
        }
        # inside an initialised torch.distributed group (playnext.train.distributed) fit is
        # data-parallel: every rank calls fit with the same data and config
        active = dist.is_available() and dist.is_initialized()
        rank, world_size = (dist.get_rank(), dist.get_world_size()) if active else (0, 1)
        try:
            self.report_ = train(
                self.net_,
                self,
                cfg,
                seed=cfg.seed,
                validate=self._validator(valid, train_data.n_items, world_size > 1),
                fingerprint=fingerprint,
                rank=rank,
                world_size=world_size,
                on_epoch_end=self.on_epoch_end,
                started=started,
            )
        finally:
            self._release()

    def _validator(
        self, valid: EvalSet | None, n_items: int, distributed: bool
    ) -> Callable[[], float] | None:
        """The loop's validation: NDCG@10 of the current network over the validation users,
        split across ranks and reduced under DDP (every rank gets the same score)."""
        if valid is None:
            return None
        return lambda: evaluate(self.score, valid, n_items, ks=(10,), distributed=distributed).metrics[
            SELECT_METRIC
        ]

    # ---- capabilities and persistence -----------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.net_.parameters()).device

    def n_params(self) -> int:
        return sum(p.numel() for p in self.net_.parameters())

    def training_report(self) -> TrainReport | None:
        return self.report_

    def _state(self) -> dict[str, torch.Tensor]:
        return dict(self.net_.state_dict())

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.net_ = self._new_net()
        self.net_.load_state_dict(state)
        # the device fit would use: a model saved after training on a GPU scores there again
        self.net_.to(load_device(self.config.device)).eval()


def known_items(seq: torch.Tensor, n_items: int) -> torch.Tensor:
    """Padded +1 ids with anything outside the catalog turned into padding."""
    return seq.masked_fill(seq > n_items, B.PAD)


def sample_negatives(rng: np.random.Generator, n_items: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniform item ids of `shape` from the epoch's generator (a resumed epoch draws the same)."""
    return torch.from_numpy(rng.integers(0, n_items, size=shape, dtype=np.int64))


def search_space_from(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """One-at-a-time variations around the default (first value of each list is the default)."""
    out: list[dict[str, Any]] = [{}]
    for key, values in grid.items():
        out.extend({key: v} for v in values[1:])
    return out
