"""The next-item recipe that SASRec, HSTU and GRU4Rec share: every position of the most recent
`max_len` + 1 items of a history predicts its next item; scores = state · item vectors, over
all items.

Opt-in features are parts (models/parts/) that `SequenceRecommender` composes from its config
(models/sequence_config.py): typed actions as inputs, typed targets, the item content tower, the
repeat bonus, sparse item rows and length buckets. Each part owns its arrays and maths; this
class only threads them through training and scoring.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import polars as pl
import torch
from torch import nn

from playnext.data.interactions import Histories, Interactions
from playnext.models.neural import NeuralRecommender, known_items, sample_negatives
from playnext.models.parts import actions, repeat, targets
from playnext.models.parts.buckets import loss_scale, run_chunks, score_chunks, training_groups
from playnext.models.parts.content import ContentVocab, learn_content, new_tower
from playnext.models.parts.net import SequenceNet
from playnext.models.parts.sparse import sparse_rows
from playnext.models.sequence_config import SequenceConfig, max_len_from_lengths
from playnext.train import batches as B
from playnext.train.loop import LOSS_SCALE, Batch
from playnext.train.losses import dot_product_loss


class SequenceRecommender(NeuralRecommender):
    """Next-item training at every position of the most recent `max_len` + 1 items per user;
    logits = hidden state · item embedding (tied input/output), over all items.

    A subclass builds its net (`_build`); one with inputs beyond items and actions (HSTU's
    timestamps and request times) adds them to batches (`_batch_extras`), the loss's forward
    (`_encode_batch`) and scoring (`_score_inputs`).
    """

    config: SequenceConfig
    net_: SequenceNet
    item_tables: ClassVar[dict[str, int]] = {
        "item_emb.weight": 1,
        **{f"content.{b}": 1 for b in ("genres", "kind", "year", "text")},
    }
    logits_in_float32: ClassVar[bool] = False  # True: the loss takes states and vectors as float32
    # the event types it was trained with (typed configs only): action ids and the types the
    # serving API accepts follow this order
    event_types_: tuple[str, ...] = ()
    content_vocab_: ContentVocab | None = None
    _content_feats: dict[str, torch.Tensor] | None = None  # until the net's buffers hold them
    _acts: Histories | None = None
    _kinds: Histories | None = None

    # ---- the network: the subclass's blocks plus the parts the config turns on ----------------
    def _learn_vocab(self, train: Interactions) -> None:
        cfg = self.config
        if cfg.max_len == 0:  # left open: the window fits the data (the saved config holds it)
            cfg.max_len = max_len_from_lengths(train.sequences().lengths)
        vocab, feats = learn_content(train.meta, cfg.item_features, cfg.text_encoder)
        self.content_vocab_, self._content_feats = vocab, feats
        self.event_types_ = actions.learn_event_types(train, self.name, cfg.targets) if cfg.typed else ()

    def _new_net(self) -> nn.Module:
        net = self._build()
        assert isinstance(net, SequenceNet)
        cfg, vocab = self.config, self.content_vocab_
        if vocab is not None:
            n_items, ids = int(self.n_items_ or 0), net.item_emb.weight  # ids: (I + 1, D)
            net.content = new_tower(vocab, n_items, cfg.dim, ids, cfg.seed + 1, self._content_feats)
            net.id_dropout = cfg.id_dropout
        if cfg.repeat_bonus:
            net.repeat_beta = repeat.new_beta(cfg.max_len)
        return net

    def n_actions(self) -> int:
        """Rows of the action table `_build` gives the net (0: an untyped config, no table)."""
        return actions.n_actions(self.event_types_, self.config.n_value_buckets) if self.config.actions else 0

    def action_ids(self, history: Histories) -> np.ndarray:
        """(N,) action id of every stored event of `history`, against this model's event types."""
        return actions.action_ids(history, self.event_types_, self.config.n_value_buckets)

    # ---- training -----------------------------------------------------------------------------
    def _prepare(self, train: Interactions) -> None:
        seqs = train.sequences()
        self._prepare_events(seqs)
        _, self._seqs = B.next_item_arrays(seqs, self.config.max_len)

    def _prepare_events(self, seqs: Histories) -> None:
        """Typed configs: each event's action id (an input) and its target kind, cropped as the
        items are (parts.actions, parts.targets)."""
        cfg = self.config
        self._acts = self._kinds = None
        if not cfg.typed or seqs.events is None or seqs.values is None:
            return
        if cfg.actions:
            self._acts = actions.training_actions(seqs, self.action_ids(seqs), cfg.max_len)
        if targets.weighs_targets(cfg.targets, cfg.event_weights):
            self._kinds = targets.training_kinds(seqs, self.event_types_, cfg.max_len)

    def _release(self) -> None:
        self._seqs = Histories(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64))
        self._acts = self._kinds = None
        self._content_feats = None  # the net's buffers hold them from here on

    def steps_per_epoch(self, batch_size: int, world_size: int) -> int:
        return -(-(len(self._seqs) // world_size) // batch_size)

    def _batch_extras(self, rows: np.ndarray) -> Batch:
        """Extra aligned inputs for the training rows `rows` (e.g. HSTU's timestamps); none here."""
        return {}

    def train_batches(
        self, rng: np.random.Generator, batch_size: int, rank: int, world_size: int
    ) -> Iterator[Batch]:
        cfg, n_items = self.config, int(self.n_items_ or 0)
        order = B.shard(rng.permutation(len(self._seqs)), rank, world_size)
        terms = self._seqs.lengths - 1  # positions with a next item, per row
        groups, mean_terms = training_groups(order, terms, batch_size, cfg.length_buckets, rng)
        weights = targets.kind_weights(cfg.targets, self.event_types_, cfg.type_weights())  # (kinds,)
        for rows in groups:
            inputs, next_items = B.split_next(self._seqs.take(rows))
            batch = {"inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(next_items)}
            if self._acts is not None:
                batch["actions"] = torch.from_numpy(B.split_next(self._acts.take(rows))[0])  # (B, T)
            if self._kinds is not None:
                targets.weigh_targets(batch, self._kinds.take(rows), weights, cfg.targets == "positive")
            if mean_terms:
                batch[LOSS_SCALE] = loss_scale(terms[rows], mean_terms)
            batch.update(self._batch_extras(rows))
            if cfg.loss == "sampled_softmax" and cfg.n_negatives:
                batch["negatives"] = sample_negatives(rng, n_items, (cfg.n_negatives,))
            elif cfg.loss == "bce":
                batch["negatives"] = sample_negatives(rng, n_items, (*next_items.shape, cfg.n_negatives))
            yield batch

    def loss_terms(self, batch: Batch) -> int:
        return int((batch["targets"] > 0).sum())  # the loss is a mean over positions with a target

    def _encode_batch(self, batch: Batch) -> torch.Tensor:
        """(B, T, D) states of a training batch's inputs."""
        return self.net_.encode(batch["inputs"], actions=batch.get("actions"))

    def train_loss(self, batch: Batch) -> torch.Tensor:
        cfg = self.config
        h = self._encode_batch(batch)  # (B, T, D)
        mask = batch["targets"] > 0  # (B, T) positions with a next item
        weights = batch["target_weights"][mask] if "target_weights" in batch else None  # (N,)
        neg = batch.get("negatives")
        if neg is not None and neg.dim() == 3:
            neg = neg[mask]  # (N, K)
        states, vectors = h[mask], self.net_.item_vectors()  # (N, D), (I, D)
        if self.logits_in_float32:
            states, vectors = states.float(), vectors.float()
        return dot_product_loss(
            cfg.loss,
            states,
            batch["targets"][mask] - 1,
            vectors,
            rows=sparse_rows(self.net_.item_emb.weight) if cfg.sparse_embeddings else None,
            negatives=neg,
            in_batch=cfg.in_batch_negatives,
            item_log_freq=self.item_log_freq_.to(h.device) if cfg.in_batch_negatives else None,
            weights=weights,
            bonus=self.loss_bonus(batch, mask),
        )

    def loss_bonus(self, batch: Batch, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The repeat bonus of the (N,) positions `mask` picks, for `dot_product_loss`, or None."""
        if self.net_.repeat_beta is None:
            return None
        ids, amounts = self.net_.repeat_bonus(batch["inputs"], every_position=True)  # (B, T, T)
        return ids[mask], amounts[mask]  # (N, T)

    # ---- scoring ------------------------------------------------------------------------------
    def _score(self, users: np.ndarray, history: Histories) -> torch.Tensor:
        return self._score_against(users, history, self.net_.item_vectors())

    def _score_against(self, users: np.ndarray, history: Histories, vectors: torch.Tensor) -> torch.Tensor:
        """(B, V) scores of each row's next-item state against (V, D) output vectors."""
        out = torch.zeros(len(history), len(vectors))

        def chunk(idx: np.ndarray) -> None:
            rows = history.take(idx)
            s = (self._states(users[idx], rows) @ vectors.T).float()  # (b, V)
            out[torch.from_numpy(idx)] = self.add_repeat_bonus(s, rows).cpu()  # disjoint rows

        run_chunks(list(score_chunks(history, self.config.max_len)), chunk, self.device)
        return out

    def _states(self, users: np.ndarray, rows: Histories) -> torch.Tensor:
        """(b, D) next-item states of `rows` (one scoring chunk)."""
        seq = torch.from_numpy(B.left_pad(rows, self.config.max_len))  # (b, T)
        extra = self._score_inputs(users, rows, seq.shape[1])  # e.g. HSTU's seconds, (b, T)
        acts = self.score_actions(rows, seq.shape[1])  # (b, T) or None
        seq = known_items(seq, int(self.n_items_ or 0)).to(self.device)
        return self.net_.encode_last(seq, actions=acts, **extra)  # (b, D)

    def _score_inputs(self, users: np.ndarray, rows: Histories, width: int) -> dict[str, torch.Tensor]:
        """Keyword inputs of the net's `encode_last` beyond ids and actions for `rows`, padded to
        `width` (HSTU's seconds and request times); none here."""
        return {}

    def score_actions(self, rows: Histories, width: int) -> torch.Tensor | None:
        """(b, width) left-padded action ids of `rows` for a net with an action embedding, else None."""
        if not self.config.actions:
            return None
        return actions.padded_actions(rows, self.action_ids(rows), self.config.max_len, width).to(self.device)

    def add_repeat_bonus(self, scores: torch.Tensor, rows: Histories) -> torch.Tensor:
        """(b, V) scores of `rows`' next item plus what returning adds to their window's items
        (a model trained with `repeat_bonus`; unchanged otherwise)."""
        if self.net_.repeat_beta is None:
            return scores
        seq = known_items(torch.from_numpy(B.left_pad(rows, self.config.max_len)), int(self.n_items_ or 0))
        ids, amounts = self.net_.repeat_bonus(seq.to(scores.device), every_position=False)  # (b, T)
        return repeat.add_bonus(scores, ids, amounts)

    def item_embeddings(self) -> np.ndarray | None:
        with torch.no_grad():
            return self.net_.item_vectors().detach().float().cpu().numpy()

    # ---- capabilities -------------------------------------------------------------------------
    @property
    def event_types(self) -> tuple[str, ...]:
        return self.event_types_ if self.config.actions else ()

    @property
    def trained_event_types(self) -> tuple[str, ...]:
        return self.event_types_

    @property
    def uses_repeat_bonus(self) -> bool:
        return bool(self.config.repeat_bonus)

    @property
    def max_len(self) -> int | None:
        return int(self.config.max_len)

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

    # ---- warm start and persistence -----------------------------------------------------------
    def extend_items(self, init_from: Sequence[Sequence[int]], meta: pl.DataFrame | None = None) -> None:
        """As `NeuralRecommender.extend_items`; a model with a content tower also reads the new
        items' features from `meta` (one row each, in order), else they start as unknown."""
        n_old = int(self.n_items_ or 0)
        super().extend_items(init_from)
        if meta is not None and self.content_vocab_ is not None and self.net_.content is not None:
            if meta.height != len(init_from):
                raise ValueError(f"meta has {meta.height} rows for {len(init_from)} new items")
            self.net_.content.set_features(self.content_vocab_.encode(meta), first=n_old + 1)

    def _meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event_types": list(self.event_types_)} if self.event_types_ else {}
        if self.content_vocab_ is not None:
            out["content"] = self.content_vocab_.to_dict()
        return out

    def _load_meta(self, meta: dict[str, Any]) -> None:
        self.event_types_ = tuple(str(t) for t in meta.get("event_types", ()))
        self._content_feats = None  # the features are buffers of the saved weights
        self.content_vocab_ = ContentVocab.from_dict(meta["content"]) if "content" in meta else None
