"""Typed events as inputs (`actions=true`, docs/models.md): each event's type and bucketed value
pick a row of an action table that is added to its item's embedding, so a skipped item and a
watched one read differently.

Action ids: 0 = padding, 1 = an untyped event (or one of a type the model was not trained with),
2 + type · n_value_buckets + bucket for the model's own event types. The vocabulary is the
training log's event types in its order; a warm start keeps it, and serving accepts only these.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from playnext.data.events import value_buckets
from playnext.data.interactions import Histories, Interactions
from playnext.errors import ConfigError
from playnext.train import batches as B

UNTYPED_ACTION = 1


def learn_event_types(train: Interactions, model: str, targets: str) -> tuple[str, ...]:
    """The event types of a typed config's training log (inputs and targets share them)."""
    if not train.event_names:
        raise ConfigError(
            f"{model}: actions=true or targets={targets!r} need a log with event "
            "types (an event column), and this one has none"
        )
    return train.event_names


def n_actions(event_types: Sequence[str], n_value_buckets: int) -> int:
    """Rows of the action table: padding, untyped, then every (type, bucket)."""
    return 2 + len(event_types) * n_value_buckets


def action_ids(history: Histories, event_types: tuple[str, ...], n_value_buckets: int) -> np.ndarray:
    """(N,) action id of every stored event of `history` against `event_types`: an untyped
    event, or one of a type not among them, is `UNTYPED_ACTION`."""
    if history.events is None or history.values is None or not event_types:
        return np.full(len(history.items), UNTYPED_ACTION, dtype=np.int64)
    own = {name: i for i, name in enumerate(event_types)}
    remap = np.array([own.get(n, -1) for n in history.event_names] + [-1], dtype=np.int64)
    codes = remap[history.events]  # (N,) -1: untyped or unknown
    buckets = value_buckets(codes, history.values, event_types, n_value_buckets)
    return np.where(codes >= 0, 2 + codes * n_value_buckets + buckets, UNTYPED_ACTION)


def training_actions(seqs: Histories, ids: np.ndarray, max_len: int) -> Histories:
    """The action ids `ids` of `seqs`' events cropped as `next_item_arrays` crops the items,
    stored minus one: `left_pad` adds the one back (0 stays padding)."""
    _, acts = B.next_item_arrays(Histories(seqs.indptr, ids - 1), max_len)
    return acts


def padded_actions(rows: Histories, ids: np.ndarray, max_len: int, width: int) -> torch.Tensor:
    """(b, width) action ids `ids` of `rows`' events, left-padded as `left_pad` pads their items."""
    return torch.from_numpy(B.left_pad(Histories(rows.indptr, ids - 1), max_len, min_width=width))


class ActionEmbedding(nn.Embedding):
    """The (A, D) action table, row 0 padding. Its rows add to the item embeddings, so a
    sequence keeps one position per event (the KV cache still appends one key per event) and an
    untyped history costs nothing extra. A net builds it after its own layers, so an untyped
    net draws exactly the initial weights it always did."""

    def __init__(self, n_actions: int, dim: int, init_std: float) -> None:
        super().__init__(n_actions, dim, padding_idx=0)
        nn.init.normal_(self.weight, std=init_std)
        with torch.no_grad():
            self.weight[0].zero_()

    def add_to(
        self, x: torch.Tensor, seq: torch.Tensor, actions: torch.Tensor | None, input_scale: float
    ) -> torch.Tensor:
        """(B, T, D) embeddings `x` of the (B, T) ids `seq`, plus each event's action vector from
        (B, T) `actions` (None: every event untyped), over the net's `input_scale`."""
        if actions is None:
            actions = torch.where(seq > 0, UNTYPED_ACTION, 0)  # (B, T) every event untyped
        # Centred: what every action row shares is a shift of every position, which tells the
        # model nothing yet (one type everywhere: all of it) and, trained at every position of
        # every batch, outgrows the sparsely trained item rows and drowns them in the first
        # LayerNorm. Unscaled by the net's input scale (√d in SASRec and HSTU), for the same reason.
        table = self.weight  # (A, D)
        a = (table[actions] - table[1:].mean(0)) * (seq > 0)[..., None].to(x.dtype)  # (B, T, D)
        return x + a / input_scale  # (B, T, D)
