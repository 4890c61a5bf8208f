"""Caser (Tang & Wang, WSDM 2018): convolutions over the embedding "image" of the L most recent items.

Horizontal filters (heights 1..L, max-pooled over time) catch union- and skip-level sequential
patterns; vertical filters weight the L items per embedding dimension. Their output joins a
user embedding (the mean user for anonymous or unknown users) and is scored against a
separate output embedding of all items. `max_len` is the paper's L.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from playnext.config import require
from playnext.data.interactions import Histories, Interactions
from playnext.models.neural import (
    NeuralConfig,
    NeuralRecommender,
    known_items,
    sample_negatives,
    search_space_from,
)
from playnext.models.registry import register
from playnext.train import batches as B
from playnext.train.loop import Batch
from playnext.train.losses import dot_product_loss


@dataclasses.dataclass
class CaserConfig(NeuralConfig):
    max_len: int = 5  # L, the window of recent items
    n_h: int = 16  # horizontal filters per height
    n_v: int = 4  # vertical filters
    dim: int = 50
    dropout: float = 0.5
    batch_size: int = 512
    epochs: int = 30

    def validate(self) -> None:
        super().validate()
        require(self.max_len >= 1, f"max_len must be >= 1, got {self.max_len}")
        require(self.n_h >= 0 and self.n_v >= 0, f"n_h and n_v must be >= 0, got {self.n_h}, {self.n_v}")
        require(self.n_h + self.n_v >= 1, "Caser needs at least one filter (n_h + n_v >= 1)")


class CaserNet(nn.Module):
    def __init__(self, n_users: int, n_items: int, cfg: CaserConfig) -> None:
        super().__init__()
        d, length = cfg.dim, cfg.max_len
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.user_emb = nn.Embedding(max(1, n_users), d)
        # convolutions written as matmuls over unfolded windows: same maths as Conv2d, far
        # faster on CPU for these thin (h × D) kernels
        self.conv_v = nn.Linear(length, cfg.n_v) if cfg.n_v else None
        self.conv_h = (
            nn.ModuleList(nn.Linear(h * d, cfg.n_h) for h in range(1, length + 1)) if cfg.n_h else None
        )
        self.fc = nn.Linear(cfg.n_v * d + cfg.n_h * length, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.out_emb = nn.Embedding(n_items, 2 * d)
        self.out_bias = nn.Parameter(torch.zeros(n_items))
        for emb in (self.item_emb, self.user_emb, self.out_emb):
            nn.init.normal_(emb.weight, std=1.0 / d)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def encode(self, users: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        x = self.item_emb(seq)  # (B, L, D)
        b, length, d = x.shape
        parts = []
        if self.conv_v is not None:
            parts.append(self.conv_v(x.transpose(1, 2)).transpose(1, 2).reshape(b, -1))  # (B, n_v·D)
        if self.conv_h is not None:
            for h, conv in enumerate(self.conv_h, start=1):
                win = x.unfold(1, h, 1).transpose(2, 3).reshape(b, length - h + 1, h * d)  # (B, L-h+1, h·D)
                parts.append(F.relu(conv(win)).amax(1))  # (B, n_h) max over time
        z = F.relu(self.fc(self.drop(torch.cat(parts, 1))))  # (B, D)
        known = (users >= 0) & (users < self.user_emb.num_embeddings)  # (B,)
        u = self.user_emb(users.clamp(0, self.user_emb.num_embeddings - 1))  # (B, D)
        u = torch.where(known[:, None], u, self.user_emb.weight.mean(0)[None])  # unknown → mean user
        return torch.cat([z, u], 1)  # (B, 2D)


@register("caser")
class Caser(NeuralRecommender):
    """Convolutional sequence embedding; one training example per (user, position) window."""

    config_class = CaserConfig
    config: CaserConfig
    net_: CaserNet
    item_tables: ClassVar[dict[str, int]] = {"item_emb.weight": 1, "out_emb.weight": 0, "out_bias": 0}
    user_tables = ("user_emb.weight",)

    @classmethod
    def search_space(cls) -> list[dict[str, Any]]:
        return search_space_from({"dropout": [0.5, 0.3], "max_len": [5, 9]})

    @property
    def max_len(self) -> int | None:
        return int(self.config.max_len)  # L: it reads the L most recent items

    def _build(self) -> CaserNet:
        return CaserNet(int(self.n_users_ or 0), int(self.n_items_ or 0), self.config)

    def _prepare(self, train: Interactions) -> None:
        self._rows, self._inputs, self._targets = B.windows(train.sequences(), self.config.max_len)

    def _release(self) -> None:
        empty = np.zeros(0, dtype=np.int64)
        self._rows, self._inputs, self._targets = empty, empty.reshape(0, self.config.max_len), empty

    def steps_per_epoch(self, batch_size: int, world_size: int) -> int:
        return -(-(len(self._targets) // world_size) // batch_size)

    def train_batches(
        self, rng: np.random.Generator, batch_size: int, rank: int, world_size: int
    ) -> Iterator[Batch]:
        order = B.shard(rng.permutation(len(self._targets)), rank, world_size)
        for sl in B.batch_slices(len(order), batch_size):
            idx = order[sl]
            batch = {
                "users": torch.from_numpy(self._rows[idx]),
                "inputs": torch.from_numpy(self._inputs[idx]),
                "targets": torch.from_numpy(self._targets[idx]),
            }
            if self.config.loss == "sampled_softmax" and self.config.n_negatives:
                batch["negatives"] = sample_negatives(
                    rng, int(self.n_items_ or 0), (self.config.n_negatives,)
                )
            elif self.config.loss == "bce":
                batch["negatives"] = sample_negatives(
                    rng, int(self.n_items_ or 0), (len(idx), self.config.n_negatives)
                )
            yield batch

    def train_loss(self, batch: Batch) -> torch.Tensor:
        z = self.net_.encode(batch["users"], batch["inputs"])  # (B, 2D)
        return dot_product_loss(
            self.config.loss,
            z,
            batch["targets"],
            self.net_.out_emb.weight,
            self.net_.out_bias,
            negatives=batch.get("negatives"),
            in_batch=self.config.in_batch_negatives,
            item_log_freq=self.item_log_freq_.to(z.device) if self.config.in_batch_negatives else None,
        )

    def _score(self, users: np.ndarray, history: Histories) -> torch.Tensor:
        n_items = int(self.n_items_ or 0)
        seq = torch.from_numpy(
            B.left_pad(history, self.config.max_len, min_width=self.config.max_len)
        )  # (B, L)
        seq = known_items(seq, n_items).to(self.device)
        z = self.net_.encode(torch.from_numpy(users).to(self.device), seq)  # (B, 2D)
        return (z @ self.net_.out_emb.weight.T + self.net_.out_bias).float().cpu()  # (B, I)
