"""Which events are next-item targets (`targets`, docs/models.md): every one ("all", the
default); only positive ones ("positive": skips and low ratings stay inputs, never targets); or
every one weighted by its type ("weighted", from `event_weights` entries such as "skip:0.2").

Each event's target kind is 2 · type + positive, type = len(event_types) for an untyped event or
one of a type the model was not trained with (a warm start keeps its types; the log may name
others); a kind's weight is looked up per training batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from playnext.config import require
from playnext.data.events import positive_mask
from playnext.data.interactions import Histories
from playnext.train import batches as B
from playnext.train.loop import Batch

TARGETS = ("all", "positive", "weighted")


def parse_event_weights(entries: Sequence[str]) -> dict[str, float]:
    """`event_weights` entries ("type:weight") as {type: weight}; a type not listed weighs 1."""
    out: dict[str, float] = {}
    for entry in entries:
        name, sep, w = entry.partition(":")
        try:
            out[name.strip()] = float(w)
        except ValueError:
            sep = ""
        require(bool(sep and name.strip()) and out.get(name.strip(), -1.0) >= 0,
                f"event_weights entries are 'type:weight' with weight >= 0, got {entry!r}")  # fmt: skip
    return out


def weighs_targets(targets: str, event_weights: Sequence[str]) -> bool:
    """Whether training batches need their targets' kinds: unit weights would only cost the
    chunked softmax its memory bound (losses.py)."""
    return targets != "all" or bool(event_weights)


def training_kinds(seqs: Histories, event_types: tuple[str, ...], max_len: int) -> Histories:
    """The target kind of every event of typed `seqs`, cropped as `next_item_arrays` crops the
    items, stored minus one (`left_pad` adds it back)."""
    assert seqs.events is not None and seqs.values is not None
    n = len(event_types)
    own = {name: i for i, name in enumerate(event_types)}
    types = np.array([own.get(name, n) for name in seqs.event_names] + [n], dtype=np.int64)[seqs.events]
    kinds = 2 * types + positive_mask(seqs.events, seqs.values, seqs.event_names)  # (N,)
    _, out = B.next_item_arrays(Histories(seqs.indptr, kinds), max_len)
    return out


def kind_weights(targets: str, event_types: tuple[str, ...], weights: dict[str, float]) -> torch.Tensor:
    """(2 · (types + 1),) loss weight of each target kind, as `targets` asks."""
    n = len(event_types)
    if targets == "positive":
        return torch.tensor([0.0, 1.0] * (n + 1))
    return torch.tensor([weights.get(t, 1.0) for t in (*event_types, "") for _ in (0, 1)])


def weigh_targets(batch: Batch, kinds: Histories, weights: torch.Tensor, positive_only: bool) -> None:
    """Apply the kind weights to `batch`, whose rows' kinds are `kinds`: positive-only training
    drops its zero-weight targets (no loss at all), weighted training carries `target_weights`."""
    k = torch.from_numpy(B.split_next(kinds)[1])  # (B, T) each target's kind + 1, 0 = none
    w = weights[(k - 1).clamp(min=0)] * (k > 0)  # (B, T)
    if positive_only:
        batch["targets"][w == 0] = B.PAD  # negative events are never targets
    else:
        batch["target_weights"] = w
