"""Shared pieces of the neural models: the config mix-in, the fit/score/save plumbing that
hands work to the one training loop, and the next-item recipe that SASRec and GRU4Rec share.

Items are embedded with id + 1 (0 = padding); logits are always over the real items 0..I-1.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from playnext.config import choice, require
from playnext.data.events import positive_mask, value_buckets
from playnext.data.interactions import Histories, Interactions
from playnext.data.split import EvalSet
from playnext.errors import ConfigError
from playnext.evaluate.protocol import evaluate
from playnext.models.base import ModelConfig, Recommender
from playnext.models.cache import KVCache
from playnext.models.content import FEATURES, TEXT_ENCODERS, ContentTower, ContentVocab, text_dim
from playnext.train import batches as B
from playnext.train.config import RUN_ONLY_FIELDS, SELECT_METRIC, TrainConfig
from playnext.train.device import load_device
from playnext.train.loop import LOSS_SCALE, Batch, TrainReport, train
from playnext.train.losses import LOSSES, dot_product_loss

SCORE_CHUNK = 512  # rows per forward pass when scoring: bounds attention memory
TARGETS = ("all", "positive", "weighted")
# action ids: 0 = padding, 1 = an untyped event (or a type the model was not trained with),
# 2 + type · n_value_buckets + bucket for the model's own event types
UNTYPED_ACTION = 1


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


@dataclasses.dataclass
class SequenceConfig(NeuralConfig):
    """A neural config for models that read the most recent `max_len` items of a history."""

    max_len: int = 200
    # sparse item-table gradients + SparseAdam: only the rows a batch touches are read and
    # written, which is what lets a 10M-item catalog train on one machine (sampled losses only)
    sparse_embeddings: bool = False
    # 0: shuffled batches; k > 0: sort each pool of k batches by length (batches pad far less:
    # ML-1M rows average 108 of 200 positions), each batch's mean loss re-weighted by its share
    # of the epoch's positions so the objective stays the per-position mean it is without buckets
    length_buckets: int = 0
    # typed events (docs/models.md): an action embedding (event type, bucketed value) added to
    # each input item's; off by default, so saved models and recipes read as before
    actions: bool = False
    n_value_buckets: int = 4
    # which events are next-item targets: every one; only positive ones (skips and low ratings
    # stay inputs); or every one with its type's weight from `event_weights` ("skip:0.2", …)
    targets: str = "all"
    event_weights: list[str] = dataclasses.field(default_factory=list)
    # item content (docs/models.md): a tower over these metadata features adds to each item's id
    # embedding, and an item unseen in training is scored from its content alone
    item_features: list[str] = dataclasses.field(default_factory=list)
    text_encoder: str = "minilm"  # for "text": the offline MiniLM, or hashing (fast, for tests)
    id_dropout: float = 0.1  # with item_features: P(an item's id part is dropped) per training step
    # re-listens (docs/models.md): each item of the input window adds a learned weight of how
    # long ago it was (log-spaced buckets) to its own score, so returning is learned apart from taste
    repeat_bonus: bool = False

    def validate(self) -> None:
        super().validate()
        require(self.max_len >= 1, f"max_len must be >= 1, got {self.max_len}")
        require(self.n_value_buckets >= 1, f"n_value_buckets must be >= 1, got {self.n_value_buckets}")
        choice(self.targets, TARGETS, "targets")
        self.type_weights()
        require(self.length_buckets >= 0, f"length_buckets must be >= 0, got {self.length_buckets}")
        for f in self.item_features:
            choice(f, FEATURES, "item_features entries")
        require(len(set(self.item_features)) == len(self.item_features), "item_features has duplicates")
        choice(self.text_encoder, TEXT_ENCODERS, "text_encoder")
        require(0.0 <= self.id_dropout < 1.0, f"id_dropout must be in [0, 1), got {self.id_dropout}")
        require(
            not (self.sparse_embeddings and self.item_features),
            "item_features needs dense item tables (sparse_embeddings=false): every step reads the tower",
        )
        require(
            not self.repeat_bonus or self.loss == "ce",
            "repeat_bonus needs loss='ce' (the bonus reaches every seen item's logit in the full softmax)",
        )
        require(
            not self.sparse_embeddings or self.loss != "ce",
            "sparse_embeddings needs loss='sampled_softmax' or 'bce' (full softmax touches every item row)",
        )

    def type_weights(self) -> dict[str, float]:
        """`event_weights` as {type: weight}; a type not listed weighs 1."""
        out: dict[str, float] = {}
        for entry in self.event_weights:
            name, sep, w = entry.partition(":")
            try:
                out[name.strip()] = float(w)
            except ValueError:
                sep = ""
            require(bool(sep and name.strip()) and out.get(name.strip(), -1.0) >= 0,
                    f"event_weights entries are 'type:weight' with weight >= 0, got {entry!r}")  # fmt: skip
        return out

    @property
    def typed(self) -> bool:
        """Whether the model reads events at all (as inputs or to choose its targets)."""
        return self.actions or self.targets != "all"


class NeuralRecommender(Recommender):
    """Fits through `playnext.train.loop.train`; saves the network's state dict.

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
        for key, lead in self.item_tables.items():
            if key not in state:
                continue  # an optional table this config does not build
            old = state[key]
            items = old[lead:]  # (I, …)
            if key.startswith("content."):  # metadata, not learned: unknown until told (see overrides)
                rows = [torch.zeros_like(items[0]) for _ in init_from]
            else:
                rows = [
                    items[torch.as_tensor(list(nb), dtype=torch.long, device=old.device)].mean(0)
                    if len(nb)
                    else items.mean(0)
                    for nb in init_from
                ]
            state[key] = torch.cat([old, torch.stack(rows)]) if rows else old
        self.n_items_ = n_old + len(init_from)
        self._rebuild(state)

    def extend_users(self, n_users: int) -> None:
        """Grow the per-user tables to `n_users` rows, new users starting as the mean user."""
        if self.n_users_ is None or n_users <= self.n_users_:
            return
        state = {k: v.detach() for k, v in self.net_.state_dict().items()}
        for key in self.user_tables:
            if key in state:
                old = state[key]  # (U, …)
                extra = old.mean(0, keepdim=True).expand(n_users - len(old), *old.shape[1:])
                state[key] = torch.cat([old, extra])
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

    def _fit(
        self, train_data: Interactions, valid: EvalSet | None, start: dict[str, torch.Tensor] | None = None
    ) -> None:
        cfg = self.config
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

    @property
    def device(self) -> torch.device:
        return next(self.net_.parameters()).device

    def n_params(self) -> int:
        return sum(p.numel() for p in self.net_.parameters())

    def _state(self) -> dict[str, torch.Tensor]:
        return dict(self.net_.state_dict())

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.net_ = self._new_net()
        self.net_.load_state_dict(state)
        # the device fit would use: a model saved after training on a GPU scores there again
        self.net_.to(load_device(self.config.device)).eval()


def recency_buckets(max_len: int) -> int:
    """Log-spaced buckets of how many events ago: 0, 1, 2–3, 4–7, … up to `max_len` − 1."""
    return max(1, max_len).bit_length()


def recency_bucket(distance: torch.Tensor, n: int) -> torch.Tensor:
    """floor(log2(d + 1)) of each distance d ≥ 0, capped at n − 1 (exact: integer bit lengths)."""
    d = distance.long() + 1
    bucket = torch.zeros_like(d)
    for b in range(1, n):
        bucket += (d >= (1 << b)).long()
    return bucket


def known_items(seq: torch.Tensor, n_items: int) -> torch.Tensor:
    """Padded +1 ids with anything outside the catalog turned into padding."""
    return seq.masked_fill(seq > n_items, B.PAD)


def sample_negatives(rng: np.random.Generator, n_items: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.from_numpy(rng.integers(0, n_items, size=shape, dtype=np.int64))


class SequenceNet(nn.Module):
    """What SequenceRecommender needs from a network, and what serving asks of one.

    `times` arguments are (B, ·) seconds aligned with the ids, for nets with a time bias;
    the others ignore them. `actions` are (B, ·) action ids aligned with the ids (see
    `UNTYPED_ACTION`) for nets built with an action embedding; None reads every event as
    untyped. Attention nets also serve from a KV cache (`prefill`, `step`).
    """

    item_emb: nn.Embedding
    id_dropout: float
    input_scale: float = 1.0  # what the net multiplies embed_items' output by (√d in SASRec, HSTU)

    def __init__(self) -> None:
        super().__init__()
        self.action_emb: nn.Embedding | None = None  # built by nets of typed configs
        self.content: ContentTower | None = None  # attached by SequenceRecommender (item_features)
        self.id_dropout = 0.0
        self.repeat_beta: nn.Parameter | None = None  # attached by SequenceRecommender (repeat_bonus)

    def item_table(self) -> torch.Tensor:
        """(I + 1, D) input vectors of the catalog, row 0 padding: the id table, plus the content
        tower's vectors when there is one (each id row dropped with `id_dropout` in training)."""
        w = self.item_emb.weight  # (I + 1, D)
        if self.content is None:
            return w
        if self.training and self.id_dropout > 0:
            keep = torch.rand(w.shape[0], 1, device=w.device) >= self.id_dropout  # (I + 1, 1)
            w = w * keep.to(w.dtype)
        return w + self.content()  # (I + 1, D)

    def out_vectors(self, v: torch.Tensor) -> torch.Tensor:
        """Item vectors as scoring uses them (HSTU normalises them); identity here."""
        return v

    def encode(self, seq: torch.Tensor, *, actions: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError  # (B, T) → (B, T, D)

    def encode_last(
        self, seq: torch.Tensor, times: torch.Tensor | None = None, *, actions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T) → (B, D), the state that scores the next item; nets that can skip the other
        positions' last-layer work override it (scoring and serving call only this)."""
        return self.encode(seq, actions=actions)[:, -1]

    def embed_items(self, seq: torch.Tensor, actions: torch.Tensor | None) -> torch.Tensor:
        """(B, T) ids → (B, T, D) item embeddings, plus each event's action embedding when the
        net has one: additive, so the sequence keeps one position per event (the KV cache still
        appends one key per event) and an untyped history costs nothing extra."""
        # (B, T, D); a content tower's table is built per call (its id rows dropped in training)
        x = self.item_emb(seq) if self.content is None else F.embedding(seq, self.item_table(), padding_idx=0)
        if self.action_emb is None:
            return x
        if actions is None:
            actions = torch.where(seq > 0, UNTYPED_ACTION, 0)  # (B, T) every event untyped
        # Centred: what every action row shares is a shift of every position, which tells the
        # model nothing yet (one type everywhere: all of it) and, trained at every position of
        # every batch, outgrows the sparsely trained item rows and drowns them in the first
        # LayerNorm. Unscaled by the net's input scale (√d in SASRec and HSTU), for the same reason.
        table = self.action_emb.weight  # (A, D)
        a = (table[actions] - table[1:].mean(0)) * (seq > 0)[..., None].to(x.dtype)  # (B, T, D)
        return x + a / self.input_scale  # (B, T, D)

    # Adam moves a parameter by about lr per step whatever its gradient: a handful of shared
    # weights on the logit scale (top logits ≈ 10) would need thousands of steps to matter
    REPEAT_GAIN = 10.0

    def repeat_weights(self) -> torch.Tensor:
        """(buckets,) the logit each recency bucket adds to a seen item's score."""
        assert self.repeat_beta is not None
        return self.repeat_beta * self.REPEAT_GAIN

    def repeat_bonus(self, seq: torch.Tensor, every_position: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """What returning adds to the scores of (B, T) left-padded ids: (item ids, amounts) to
        scatter-add into the logits, each input item j adding β[bucket(t − j)] to its own logit
        at every later position t (or only the last, `every_position=False`); an item seen
        several times adds once per time. Shapes (B, T, T) or (B, T); ids are 0-based."""
        beta = self.repeat_weights()
        t = seq.shape[1]
        pos = torch.arange(t, device=seq.device)
        real = (seq > 0).to(beta.dtype)  # (B, T)
        ids = (seq - 1).clamp(min=0)
        if not every_position:
            return ids, beta[recency_bucket(t - 1 - pos, len(beta))][None] * real  # (B, T)
        dist = pos[:, None] - pos[None, :]  # (T, T) t − j
        w = beta[recency_bucket(dist.clamp(min=0), len(beta))] * (dist >= 0).to(beta.dtype)  # (T, T)
        return ids[:, None, :].expand(-1, t, -1), w[None] * real[:, None, :]  # (B, T, T)

    def item_vectors(self) -> torch.Tensor:
        """(I, D) output embeddings of the real items: scores = state · item_vectors().T."""
        return self.out_vectors(self.item_table()[1:])

    def prefill(
        self, seq: torch.Tensor, times: torch.Tensor | None = None, *, actions: torch.Tensor | None = None
    ) -> KVCache:
        """The cache of a step that appends one item to (B, T) left-padded ids: the keys and
        values of their last `max_len - 1` positions, where they sit once that item arrives."""
        raise NotImplementedError(f"{type(self).__name__} has no KV cache")

    def step(
        self,
        items: torch.Tensor,
        cache: KVCache,
        times: torch.Tensor | None = None,
        *,
        actions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """Append (B, 1) ids to the cached rows: (B, D) the state `encode_last` gives for the
        extended rows, and the cache grown by this position (see `KVCache.extendable`)."""
        raise NotImplementedError(f"{type(self).__name__} has no KV cache")


class SequenceRecommender(NeuralRecommender):
    """Next-item training at every position of the most recent `max_len` + 1 items per user;
    logits = hidden state · item embedding (tied input/output), over all items."""

    config: SequenceConfig
    net_: SequenceNet
    item_tables: ClassVar[dict[str, int]] = {
        "item_emb.weight": 1,
        **{f"content.{b}": 1 for b in ("genres", "kind", "year", "text")},
    }
    # the event types it was trained with (typed configs only): action ids and the types the
    # serving API accepts follow this order
    event_types_: tuple[str, ...] = ()
    _acts: Histories | None = None
    _kinds: Histories | None = None

    def _prepare(self, train: Interactions) -> None:
        seqs = train.sequences()
        self._prepare_events(seqs)
        _, self._seqs = B.next_item_arrays(seqs, self.config.max_len)

    def _prepare_events(self, seqs: Histories) -> None:
        """Typed configs: each event's action id and its target kind, cropped as the items are.

        Both are stored minus one, as `left_pad` adds one (0 stays padding). A kind is
        2 · type + positive, type = len(event_types_) for an untyped event, or for one of a type
        the model was not trained with (a warm start keeps its types; the log may name others)."""
        self._acts = self._kinds = None
        if not self.config.typed or seqs.events is None or seqs.values is None:
            return
        acts = self.action_ids(seqs)
        n = len(self.event_types_)
        own = {name: i for i, name in enumerate(self.event_types_)}
        types = np.array([own.get(name, n) for name in seqs.event_names] + [n], dtype=np.int64)[seqs.events]
        kinds = 2 * types + positive_mask(seqs.events, seqs.values, seqs.event_names)
        if self.config.actions:
            _, self._acts = B.next_item_arrays(Histories(seqs.indptr, acts - 1), self.config.max_len)
        if self.config.targets != "all" or self.config.event_weights:
            # unit weights would only cost the chunked softmax its memory bound (losses.py)
            _, self._kinds = B.next_item_arrays(Histories(seqs.indptr, kinds), self.config.max_len)

    def _learn_vocab(self, train: Interactions) -> None:
        self._learn_content(train)
        self.event_types_ = ()
        if not self.config.typed:
            return
        if not train.event_names:
            raise ConfigError(
                f"{self.name}: actions=true or targets={self.config.targets!r} need a log with event "
                "types (an event column), and this one has none"
            )
        self.event_types_ = train.event_names

    def action_ids(self, history: Histories) -> np.ndarray:
        """(N,) action id of every stored event of `history`, against this model's event types:
        an untyped event, or one of a type it was not trained with, is `UNTYPED_ACTION`."""
        if history.events is None or history.values is None or not self.event_types_:
            return np.full(len(history.items), UNTYPED_ACTION, dtype=np.int64)
        own = {name: i for i, name in enumerate(self.event_types_)}
        remap = np.array([own.get(n, -1) for n in history.event_names] + [-1], dtype=np.int64)
        codes = remap[history.events]  # (N,) -1: untyped or unknown
        buckets = value_buckets(codes, history.values, self.event_types_, self.config.n_value_buckets)
        return np.where(codes >= 0, 2 + codes * self.config.n_value_buckets + buckets, UNTYPED_ACTION)

    def n_actions(self) -> int:
        """Rows of the action table: padding, untyped, then every (type, bucket)."""
        return 2 + len(self.event_types_) * self.config.n_value_buckets

    def _release(self) -> None:
        self._seqs = Histories(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64))
        self._acts = self._kinds = None
        self._content_feats = None  # the net's buffers hold them from here on

    def extend_items(self, init_from: Sequence[Sequence[int]], meta: pl.DataFrame | None = None) -> None:
        """As `NeuralRecommender.extend_items`; a model with a content tower also reads the new
        items' features from `meta` (one row each, in order), else they start as unknown."""
        n_old = int(self.n_items_ or 0)
        super().extend_items(init_from)
        if meta is not None and self.content_vocab_ is not None and self.net_.content is not None:
            if meta.height != len(init_from):
                raise ValueError(f"meta has {meta.height} rows for {len(init_from)} new items")
            feats = self.content_vocab_.encode(meta)
            with torch.no_grad():
                for name, value in feats.items():
                    buf = getattr(self.net_.content, name)
                    buf[n_old + 1 :] = value.to(buf.device, buf.dtype)

    def _type_weights(self) -> torch.Tensor:
        """(2 · (types + 1),) loss weight of each target kind, as `targets` asks."""
        n = len(self.event_types_)
        if self.config.targets == "positive":
            return torch.tensor([0.0, 1.0] * (n + 1))
        w = self.config.type_weights()
        return torch.tensor([w.get(t, 1.0) for t in (*self.event_types_, "") for _ in (0, 1)])

    def _meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event_types": list(self.event_types_)} if self.event_types_ else {}
        if self.content_vocab_ is not None:
            out["content"] = self.content_vocab_.to_dict()
        return out

    def _load_meta(self, meta: dict[str, Any]) -> None:
        self.event_types_ = tuple(str(t) for t in meta.get("event_types", ()))
        self._content_feats = None  # the features are buffers of the saved weights
        self.content_vocab_ = ContentVocab.from_dict(meta["content"]) if "content" in meta else None

    def steps_per_epoch(self, batch_size: int, world_size: int) -> int:
        return -(-(len(self._seqs) // world_size) // batch_size)

    def _batch_extras(self, rows: np.ndarray) -> Batch:
        """Extra aligned inputs for the training rows `rows` (e.g. HSTU's timestamps); none here."""
        return {}

    def train_batches(
        self, rng: np.random.Generator, batch_size: int, rank: int, world_size: int
    ) -> Iterator[Batch]:
        order = B.shard(rng.permutation(len(self._seqs)), rank, world_size)
        n_items = int(self.n_items_ or 0)
        terms = self._seqs.lengths - 1  # positions with a next item, per row
        mean_terms = 0.0
        if self.config.length_buckets:
            groups = B.length_buckets(order, terms, batch_size, self.config.length_buckets, rng)
            mean_terms = float(terms[order].sum()) / max(1, len(groups))
        else:
            groups = [order[sl] for sl in B.batch_slices(len(order), batch_size)]
        for rows in groups:
            inputs, targets = B.split_next(self._seqs.take(rows))
            batch = {"inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(targets)}
            if self._acts is not None:
                batch["actions"] = torch.from_numpy(B.split_next(self._acts.take(rows))[0])  # (B, T)
            if self._kinds is not None:
                kinds = torch.from_numpy(B.split_next(self._kinds.take(rows))[1])  # (B, T) kind + 1
                weights = self._type_weights()[(kinds - 1).clamp(min=0)] * (kinds > 0)  # (B, T)
                if self.config.targets == "positive":
                    batch["targets"][weights == 0] = B.PAD  # negative events are never targets
                else:
                    batch["target_weights"] = weights
            if mean_terms:
                batch[LOSS_SCALE] = torch.tensor(float(terms[rows].sum()) / mean_terms)
            batch.update(self._batch_extras(rows))
            if self.config.loss == "sampled_softmax" and self.config.n_negatives:
                batch["negatives"] = sample_negatives(rng, n_items, (self.config.n_negatives,))
            elif self.config.loss == "bce":
                batch["negatives"] = sample_negatives(rng, n_items, (*targets.shape, self.config.n_negatives))
            yield batch

    def loss_terms(self, batch: Batch) -> int:
        return int((batch["targets"] > 0).sum())  # the loss is a mean over positions with a target

    def train_loss(self, batch: Batch) -> torch.Tensor:
        h = self.net_.encode(batch["inputs"], actions=batch.get("actions"))  # (B, T, D)
        mask = batch["targets"] > 0  # (B, T) positions with a next item
        weights = batch["target_weights"][mask] if "target_weights" in batch else None  # (N,)
        neg = batch.get("negatives")
        if neg is not None and neg.dim() == 3:
            neg = neg[mask]  # (N, K)
        rows = None
        if self.config.sparse_embeddings:
            table = self.net_.item_emb.weight

            def rows(ids: torch.Tensor) -> torch.Tensor:
                return F.embedding(ids + 1, table, sparse=True)  # a sparse gradient, unlike table[ids]

        return dot_product_loss(
            self.config.loss,
            h[mask],
            batch["targets"][mask] - 1,
            self.net_.item_vectors(),  # (I, D)
            rows=rows,
            negatives=neg,
            in_batch=self.config.in_batch_negatives,
            item_log_freq=self.item_log_freq_.to(h.device) if self.config.in_batch_negatives else None,
            weights=weights,
            bonus=self.loss_bonus(batch, mask),
        )

    def loss_bonus(self, batch: Batch, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The repeat bonus of the (N,) positions `mask` picks, for `dot_product_loss`, or None."""
        if self.net_.repeat_beta is None:
            return None
        ids, amounts = self.net_.repeat_bonus(batch["inputs"], every_position=True)  # (B, T, T)
        return ids[mask], amounts[mask]  # (N, T)

    def score_actions(self, rows: Histories, width: int) -> torch.Tensor | None:
        """(b, width) left-padded action ids of `rows` for a net with an action embedding, else None."""
        if not self.config.actions:
            return None
        acts = Histories(rows.indptr, self.action_ids(rows) - 1)  # left_pad adds the one back
        return torch.from_numpy(B.left_pad(acts, self.config.max_len, min_width=width)).to(self.device)

    def _score(self, users: np.ndarray, history: Histories) -> torch.Tensor:
        return self._score_against(users, history, self.net_.item_vectors())

    def _score_against(self, users: np.ndarray, history: Histories, vectors: torch.Tensor) -> torch.Tensor:
        """(B, V) scores of each row's next-item state against (V, D) output vectors."""
        out = torch.zeros(len(history), len(vectors))
        for idx in self._score_chunks(history):
            rows = history.take(idx)
            s = (self._states(users[idx], rows) @ vectors.T).float()  # (b, V)
            out[torch.from_numpy(idx)] = self.add_repeat_bonus(s, rows).cpu()
        return out

    def add_repeat_bonus(self, scores: torch.Tensor, rows: Histories) -> torch.Tensor:
        """(b, V) scores of `rows`' next item plus what returning adds to their window's items
        (a model trained with `repeat_bonus`; unchanged otherwise)."""
        if self.net_.repeat_beta is None:
            return scores
        seq = known_items(torch.from_numpy(B.left_pad(rows, self.config.max_len)), int(self.n_items_ or 0))
        ids, amounts = self.net_.repeat_bonus(seq.to(scores.device), every_position=False)  # (b, T)
        return scores.scatter_add(1, ids, amounts.to(scores.dtype))

    def _states(self, users: np.ndarray, rows: Histories) -> torch.Tensor:
        """(b, D) next-item states of `rows` (one scoring chunk)."""
        seq = torch.from_numpy(B.left_pad(rows, self.config.max_len))  # (b, T)
        acts = self.score_actions(rows, seq.shape[1])  # (b, T) or None
        return self.net_.encode_last(known_items(seq, int(self.n_items_ or 0)).to(self.device), actions=acts)

    # ---- item content: the tower, and scoring items the model has never seen ------------------
    content_vocab_: ContentVocab | None = None
    _content_feats: dict[str, torch.Tensor] | None = None

    def _new_net(self) -> nn.Module:
        net = self._build()
        assert isinstance(net, SequenceNet)
        if self.content_vocab_ is not None:
            std = float(net.item_emb.weight[1:].detach().std()) if net.item_emb.weight.shape[0] > 1 else 0.02
            with torch.random.fork_rng(devices=[]):  # the id net's draws stay what they always were
                torch.manual_seed(self.config.seed + 1)
                net.content = ContentTower(self.content_vocab_, int(self.n_items_ or 0), self.config.dim, std)
            net.id_dropout = self.config.id_dropout
            if self._content_feats is not None:
                net.content.set_features(self._content_feats)
        if self.config.repeat_bonus:  # zeros: training starts from the model without it
            net.repeat_beta = nn.Parameter(torch.zeros(recency_buckets(self.config.max_len)))
        return net

    def _learn_content(self, train: Interactions) -> None:
        self.content_vocab_, self._content_feats = None, None
        feats = self.config.item_features
        if not feats:
            return
        enc = self.config.text_encoder
        vocab = ContentVocab.learn(train.meta, feats, enc, text_dim(enc) if "text" in feats else 0)
        self.content_vocab_, self._content_feats = vocab, vocab.encode(train.meta)

    @property
    def has_content(self) -> bool:
        """Whether items unseen in training can be scored from their metadata (`score_new_items`)."""
        return self.content_vocab_ is not None

    def content_vectors(self, meta: pl.DataFrame) -> torch.Tensor:
        """(N, D) output vectors of the items `meta` describes (its rows, any ids), from their
        content alone: how the model sees an item it was never trained on."""
        if self.content_vocab_ is None or self.net_.content is None:
            raise RuntimeError(f"{self.name}: trained without item_features, it cannot read item content")
        feats = {k: v.to(self.device) for k, v in self.content_vocab_.encode(meta).items()}
        with torch.no_grad():
            return self.net_.out_vectors(self.net_.content(feats)).float()  # (N, D)

    def score_new_items(self, users: np.ndarray, history: Histories, vectors: torch.Tensor) -> torch.Tensor:
        """(B, I + N) scores: the model's items, then N new ones given by `content_vectors`."""
        if self.n_items_ is None:
            raise RuntimeError(f"{self.name}: call fit() before score_new_items()")
        with torch.no_grad():
            v = torch.cat([self.net_.item_vectors(), vectors.to(self.device)])  # (I + N, D)
            return self._score_against(np.asarray(users, dtype=np.int64), history, v).float()

    def item_embeddings(self) -> np.ndarray | None:
        with torch.no_grad():
            return self.net_.item_vectors().detach().float().cpu().numpy()

    def _score_chunks(self, history: Histories) -> Iterator[np.ndarray]:
        """Row indices per scoring forward pass, longest rows first, so that a chunk pads only
        to its own rows; callers put each chunk's scores back at these indices."""
        order = B.longest_first(history, self.config.max_len)
        for sl in B.batch_slices(len(order), SCORE_CHUNK):
            yield order[sl]


def search_space_from(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """One-at-a-time variations around the default (first value of each list is the default)."""
    out: list[dict[str, Any]] = [{}]
    for key, values in grid.items():
        out.extend({key: v} for v in values[1:])
    return out
