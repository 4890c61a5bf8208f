"""GRU4Rec (Hidasi et al., ICLR 2016), trained like SASRec: every position predicts its next item.

`cell="gru"` (default) or `cell="rnn"`, the plain Elman recurrence h_t = tanh(W·x_t + U·h_{t−1} + b).
Histories are left-padded for batching but packed before the recurrence, so padding never
feeds the hidden state: a user's state depends only on their own items.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from playnext.config import require
from playnext.models.neural import search_space_from
from playnext.models.parts.actions import ActionEmbedding
from playnext.models.parts.net import SequenceNet
from playnext.models.registry import register
from playnext.models.sequence import SequenceRecommender
from playnext.models.sequence_config import SequenceConfig

CELLS = ("gru", "rnn")


@dataclasses.dataclass
class GRU4RecConfig(SequenceConfig):
    cell: str = "gru"
    hidden: int = 128  # recurrent state size; projected back to `dim` to score against item embeddings
    n_layers: int = 1

    def validate(self) -> None:
        super().validate()
        require(self.cell in CELLS, f"cell must be one of {CELLS}, got {self.cell!r}")
        require(self.hidden >= 1, f"hidden must be >= 1, got {self.hidden}")
        require(self.n_layers >= 1, f"n_layers must be >= 1, got {self.n_layers}")


class GRU4RecNet(SequenceNet):
    def __init__(self, n_items: int, cfg: GRU4RecConfig, n_actions: int = 0) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0, sparse=cfg.sparse_embeddings)
        self.drop = nn.Dropout(cfg.dropout)
        rnn_cls = nn.GRU if cfg.cell == "gru" else nn.RNN
        self.rnn = rnn_cls(
            cfg.dim,
            cfg.hidden,
            cfg.n_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.n_layers > 1 else 0.0,
        )
        self.out = nn.Linear(cfg.hidden, cfg.dim)
        nn.init.normal_(self.item_emb.weight, std=cfg.dim**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        if n_actions:  # built last: an untyped net draws the initial weights it always did
            self.action_emb = ActionEmbedding(n_actions, cfg.dim, init_std=cfg.dim**-0.5)

    def encode(self, seq: torch.Tensor, *, actions: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) left-padded ids (and (B, T) action ids) → (B, T, D) states."""
        t = seq.shape[1]
        lengths = (seq > 0).sum(1)  # (B,)
        cols = torch.arange(t, device=seq.device)[None, :]  # (1, T)
        shift = (t - lengths)[:, None]  # (B, 1) leading pads
        right = seq.gather(1, (cols + shift) % t)  # (B, T) right-padded: items first
        acts = actions.gather(1, (cols + shift) % t) if actions is not None else None  # (B, T)
        x = self.drop(self.embed_items(right, acts))  # (B, T, D)
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        y, _ = self.rnn(packed)
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=t)  # (B, T, H)
        y = y.gather(
            1, ((cols - shift) % t)[:, :, None].expand(-1, -1, y.shape[2])
        )  # (B, T, H) left-aligned again
        return self.out(self.drop(y))  # (B, T, D)

    def encode_last_unpacked(self, seq: torch.Tensor) -> torch.Tensor:
        """The last position of `encode` without packing, for graph exporters (ONNX), which cannot
        trace `pack_padded_sequence`. On items-first rows the recurrence reaches each row's last
        item before any padding, so its state there is the packed one; an empty row gets zeros
        (packing gives it the state after one padding step, which `_score` never reads)."""
        t = seq.shape[1]
        lengths = (seq > 0).sum(1)  # (B,)
        cols = torch.arange(t, device=seq.device)[None, :]  # (1, T)
        right = seq.gather(1, (cols + (t - lengths)[:, None]) % t)  # (B, T) items first
        y, _ = self.rnn(self.drop(self.embed_items(right, None)))  # (B, T, H)
        last = y.gather(1, (lengths - 1).clamp(min=0)[:, None, None].expand(-1, 1, y.shape[2]))[
            :, 0
        ]  # (B, H)
        return self.out(self.drop(last * (lengths > 0)[:, None].to(last.dtype)))  # (B, D)


@register("gru4rec")
class GRU4Rec(SequenceRecommender):
    """Recurrent next-item model; scores = last hidden state (projected) · all item embeddings."""

    config_class = GRU4RecConfig
    config: GRU4RecConfig

    @classmethod
    def search_space(cls) -> list[dict[str, Any]]:
        return search_space_from({"dropout": [0.2, 0.1, 0.3], "hidden": [128, 256]})

    def _build(self) -> GRU4RecNet:
        return GRU4RecNet(int(self.n_items_ or 0), self.config, self.n_actions())
