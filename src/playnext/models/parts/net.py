"""SequenceNet: what `SequenceRecommender` needs from a network, and what serving asks of one.

Items are embedded with id + 1 (0 = padding); scores are state · `item_vectors()` over the real
items. A net builds its own blocks (SASRec, HSTU, GRU4Rec) and an `ActionEmbedding` when typed;
the recommender attaches the other opt-in parts after building it: a content tower (`content`,
with `id_dropout`) and the repeat bonus's weights (`repeat_beta`). Their state-dict keys are these
attribute names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from playnext.models.cache import KVCache
from playnext.models.parts import repeat
from playnext.models.parts.actions import ActionEmbedding
from playnext.models.parts.content import ContentTower


class SequenceNet(nn.Module):
    """The network contract of the sequence models.

    `times` arguments are (B, ·) seconds aligned with the ids, for nets with a time bias; the
    others ignore them. `actions` are (B, ·) action ids aligned with the ids (see
    `parts.actions`) for nets built with an action embedding; None reads every event as
    untyped. Attention nets also serve from a KV cache (`prefill`, `step`).
    """

    item_emb: nn.Embedding
    id_dropout: float
    input_scale: float = 1.0  # what the net multiplies embed_items' output by (√d in SASRec, HSTU)

    def __init__(self) -> None:
        super().__init__()
        self.action_emb: ActionEmbedding | None = None  # built by nets of typed configs
        self.content: ContentTower | None = None  # attached by SequenceRecommender (item_features)
        self.id_dropout = 0.0
        self.repeat_beta: nn.Parameter | None = None  # attached by SequenceRecommender (repeat_bonus)

    def item_table(self) -> torch.Tensor:
        """(I + 1, D) input vectors of the catalog, row 0 padding: the id table, plus the content
        tower's vectors when there is one."""
        w = self.item_emb.weight  # (I + 1, D)
        return w if self.content is None else self.content.add_to(w, self.id_dropout)

    def out_vectors(self, v: torch.Tensor) -> torch.Tensor:
        """Item vectors as scoring uses them (HSTU normalises them); identity here."""
        return v

    def item_vectors(self) -> torch.Tensor:
        """(I, D) output embeddings of the real items: scores = state · item_vectors().T."""
        return self.out_vectors(self.item_table()[1:])

    def embed_items(self, seq: torch.Tensor, actions: torch.Tensor | None) -> torch.Tensor:
        """(B, T) ids → (B, T, D) item embeddings, plus each event's action embedding when the
        net has one."""
        # (B, T, D); a content tower's table is built per call (its id rows dropped in training)
        x = self.item_emb(seq) if self.content is None else F.embedding(seq, self.item_table(), padding_idx=0)
        if self.action_emb is None:
            return x
        return self.action_emb.add_to(x, seq, actions, self.input_scale)  # (B, T, D)

    def encode(self, seq: torch.Tensor, *, actions: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError  # (B, T) → (B, T, D)

    def encode_last(
        self, seq: torch.Tensor, times: torch.Tensor | None = None, *, actions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T) → (B, D), the state that scores the next item; nets that can skip the other
        positions' last-layer work override it (scoring and serving call only this)."""
        return self.encode(seq, actions=actions)[:, -1]

    # ---- the repeat bonus (parts/repeat.py), for a net with `repeat_beta` ---------------------
    def repeat_weights(self) -> torch.Tensor:
        """(buckets,) the logit each recency bucket adds to a seen item's score."""
        assert self.repeat_beta is not None
        return self.repeat_beta * repeat.GAIN

    def repeat_bonus(self, seq: torch.Tensor, every_position: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(item ids, amounts) that returning adds to the logits of (B, T) left-padded ids:
        (B, T, T) at every position, or (B, T) at the last (see `repeat.bonus`)."""
        return repeat.bonus(self.repeat_weights(), seq, every_position)

    # ---- serving from a KV cache (attention nets) ---------------------------------------------
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
