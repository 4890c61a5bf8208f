"""Neural collaborative filtering (He et al., WWW 2017) on (user, item) pairs with sampled negatives.

* ``variant="neumf"`` (default): GMF (u ⊙ i) and an MLP tower on concat(u, i), fused by one
  linear layer — the paper's best model.
* ``variant="keras"``: the classic textbook network, exactly: concat(user emb, item emb) →
  Dense 128 → 64 → 32 → 1 with ReLU, sigmoid output, binary cross-entropy, Adam, 10 epochs,
  batch 32. At batch 32 an ML-1M epoch is ~150k optimizer steps (5M pairs with 4 negatives),
  i.e. tens of minutes per epoch on a laptop CPU: set `batch_size` to override.

NCF ignores the order and content of a history: it scores from the user embedding alone.
Anonymous (-1) or unknown users get the mean user embedding (no fold-in).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from playnext.config import require
from playnext.data.interactions import Columns, Histories, Interactions
from playnext.errors import ConfigError
from playnext.models.neural import NeuralConfig, NeuralRecommender, sample_negatives, search_space_from
from playnext.models.registry import register
from playnext.train import batches as B
from playnext.train.loop import Batch
from playnext.train.losses import bce, full_softmax, sampled_softmax

VARIANTS = ("neumf", "keras")
KERAS_LAYERS = (128, 64, 32)
# training defaults that depend on the variant; 0 in the config means "the variant's default"
VARIANT_DEFAULTS: dict[str, dict[str, Any]] = {
    "neumf": {"epochs": 20, "batch_size": 1024, "lr": 2e-3},
    "keras": {"epochs": 10, "batch_size": 32, "lr": 1e-3},
}


@dataclasses.dataclass
class MLPConfig(NeuralConfig):
    variant: str = "neumf"
    dim: int = 32
    layers: str = "64,32,16"  # neumf MLP tower widths (keras is fixed at 128,64,32)
    loss: str = "bce"
    n_negatives: int = 4
    dropout: float = 0.0
    epochs: int = 0  # 0 = variant default (neumf 20, keras 10)
    batch_size: int = 0  # 0 = variant default (neumf 1024, keras 32)
    lr: float = 0.0  # 0 = variant default (neumf 2e-3, keras 1e-3, the Keras Adam default)
    schedule: str = "constant"
    clip_norm: float = 0.0

    def __post_init__(self) -> None:
        for key, value in VARIANT_DEFAULTS.get(self.variant, {}).items():
            if not getattr(self, key):
                setattr(self, key, value)

    def validate(self) -> None:
        require(self.variant in VARIANTS, f"variant must be one of {VARIANTS}, got {self.variant!r}")
        super().validate()
        require(self.variant != "keras" or self.loss == "bce", "variant='keras' is defined with loss='bce'")
        try:
            widths = self.tower()
        except ValueError:
            raise ConfigError(f"layers must be comma-separated ints, got {self.layers!r}") from None
        require(all(w >= 1 for w in widths), f"layer widths must be >= 1, got {self.layers!r}")

    def tower(self) -> tuple[int, ...]:
        return (
            KERAS_LAYERS
            if self.variant == "keras"
            else tuple(int(w) for w in self.layers.split(",") if w.strip())
        )


class MLPNet(nn.Module):
    def __init__(self, n_users: int, n_items: int, cfg: MLPConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.keras = cfg.variant == "keras"
        self.user_mlp = nn.Embedding(max(1, n_users), d)
        self.item_mlp = nn.Embedding(n_items, d)
        widths = (2 * d, *cfg.tower())
        tower: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            tower += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(cfg.dropout)]
        self.tower = nn.Sequential(*tower)
        self.user_gmf: nn.Embedding | None = None if self.keras else nn.Embedding(max(1, n_users), d)
        self.item_gmf: nn.Embedding | None = None if self.keras else nn.Embedding(n_items, d)
        self.head = nn.Linear(widths[-1] + (0 if self.keras else d), 1)
        for emb in (self.user_mlp, self.item_mlp, self.user_gmf, self.item_gmf):
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.01)

    def _user(self, emb: nn.Embedding, users: torch.Tensor) -> torch.Tensor:
        known = (users >= 0) & (users < emb.num_embeddings)  # (B,)
        u = emb(users.clamp(0, emb.num_embeddings - 1))  # (B, D)
        return torch.where(known[:, None], u, emb.weight.mean(0)[None])  # unknown → mean user

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits for users (B,) against items (B, K): (B, K)."""
        k = items.shape[1]
        u = self._user(self.user_mlp, users)[:, None].expand(-1, k, -1)  # (B, K, D)
        h = self.tower(torch.cat([u, self.item_mlp(items)], -1))  # (B, K, W)
        if self.user_gmf is not None and self.item_gmf is not None:
            g = self._user(self.user_gmf, users)[:, None] * self.item_gmf(items)  # (B, K, D)
            h = torch.cat([h, g], -1)  # (B, K, W + D)
        return self.head(h).squeeze(-1)  # (B, K)


@register("mlp")
class MLP(NeuralRecommender):
    """NCF: one training pair per distinct (user, item), plus `n_negatives` uniform negatives."""

    config_class = MLPConfig
    config: MLPConfig
    net_: MLPNet
    item_tables: ClassVar[dict[str, int]] = {"item_mlp.weight": 0, "item_gmf.weight": 0}
    user_tables = ("user_mlp.weight", "user_gmf.weight")

    @classmethod
    def search_space(cls) -> list[dict[str, Any]]:
        return search_space_from({"dim": [32, 64], "n_negatives": [4, 8]})

    def _build(self) -> MLPNet:
        return MLPNet(int(self.n_users_ or 0), int(self.n_items_ or 0), self.config)

    def _prepare(self, train: Interactions) -> None:
        pairs = train.frame.select(Columns.USER, Columns.ITEM).unique(maintain_order=True)
        self._users = pairs.get_column(Columns.USER).to_numpy().astype(np.int64)
        self._items = pairs.get_column(Columns.ITEM).to_numpy().astype(np.int64)

    def _release(self) -> None:
        self._users = self._items = np.zeros(0, dtype=np.int64)

    def steps_per_epoch(self, batch_size: int, world_size: int) -> int:
        return -(-(len(self._users) // world_size) // batch_size)

    def train_batches(
        self, rng: np.random.Generator, batch_size: int, rank: int, world_size: int
    ) -> Iterator[Batch]:
        order = B.shard(rng.permutation(len(self._users)), rank, world_size)
        n_items, k = int(self.n_items_ or 0), self.config.n_negatives
        for sl in B.batch_slices(len(order), batch_size):
            idx = order[sl]
            batch = {
                "users": torch.from_numpy(self._users[idx]),
                "targets": torch.from_numpy(self._items[idx]),
            }
            if self.config.loss != "ce":
                batch["negatives"] = sample_negatives(rng, n_items, (len(idx), k))
            yield batch

    def train_loss(self, batch: Batch) -> torch.Tensor:
        users, targets = batch["users"], batch["targets"]
        if self.config.loss == "ce":  # every item is a candidate: B × I forward passes
            logits = self._all_items(users)  # (B, I)
            return full_softmax(logits, targets)
        neg = batch["negatives"]  # (B, K)
        logits = self.net_(users, torch.cat([targets[:, None], neg], 1))  # (B, 1 + K)
        if self.config.loss == "bce":
            return bce(logits[:, 0], logits[:, 1:])
        n_items = int(self.n_items_ or 0)
        log_q = torch.full(neg.shape, float(np.log(neg.shape[1] / n_items)), device=neg.device)
        return sampled_softmax(logits[:, 0], logits[:, 1:], targets, neg, log_q, log_q[:, 0])

    def _all_items(self, users: torch.Tensor) -> torch.Tensor:
        items = torch.arange(int(self.n_items_ or 0), device=users.device)[None].expand(
            len(users), -1
        )  # (B, I)
        return self.net_(users, items)  # (B, I)

    def _score(self, users: np.ndarray, history: Histories) -> torch.Tensor:
        out = [
            self._all_items(torch.from_numpy(users[sl]).to(self.device)).float().cpu()
            for sl in B.batch_slices(len(users), 64)
        ]
        scores = torch.cat(out) if out else torch.zeros(0, int(self.n_items_ or 0))
        return torch.sigmoid(scores) if self.net_.keras else scores  # keras: the sigmoid output layer
