"""Recency × frequency: the re-listening baseline — what a user played often and lately comes back.

A seen item's score sums a decayed vote over its occurrences in the history,

    r(u, i) = Σ_{t : h_t = i} γ^(T - t)        (T = the position of the latest item)

so the latest item weighs 1, the one before γ, … (γ = 1: play counts; γ → 0: the last item
only). Every item, seen or not, adds λ · n_i / max_j n_j, its training popularity scaled into
[0, λ]: an unseen item ranks by popularity, and a seen item falls below a hit once its decayed
votes are worth less than the hit's popularity (λ = 0: every seen item above every unseen one,
which then tie). γ and λ are chosen on validation (`search_space`). It answers "will they go
back?" and nothing more: under the default protocol (seen items masked) it is popularity.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from playnext.config import require
from playnext.data.interactions import Histories, Interactions
from playnext.data.split import EvalSet
from playnext.models.base import ModelConfig, Recommender
from playnext.models.registry import register


@dataclasses.dataclass
class RecencyConfig(ModelConfig):
    decay: float = 0.8  # γ: the weight of an occurrence one step further back
    pop_weight: float = 0.01  # λ: the popularity every item gets, scaled into [0, λ]

    def validate(self) -> None:
        require(0.0 <= self.decay <= 1.0, f"decay must be in [0, 1], got {self.decay}")
        require(self.pop_weight >= 0.0, f"pop_weight must be >= 0, got {self.pop_weight}")


@register("recency")
class RecencyFrequency(Recommender):
    """Scores = decayed counts of the history's items + λ · scaled training popularity."""

    config_class = RecencyConfig
    config: RecencyConfig

    @classmethod
    def search_space(cls) -> list[dict[str, Any]]:
        return [
            {},
            *({"decay": g} for g in (0.5, 0.9, 0.97, 1.0)),
            *({"pop_weight": w} for w in (0.0, 0.1, 1.0)),
        ]

    def _fit(self, train: Interactions, valid: EvalSet | None) -> None:
        counts = train.item_counts().astype(np.float64)
        self.popularity_ = torch.from_numpy(counts / max(1.0, counts.max())).float()  # (I,) in [0, 1]

    def _score(self, users: np.ndarray, history: Histories) -> torch.Tensor:
        n_items = int(self.n_items_ or 0)
        keep = (history.items >= 0) & (history.items < n_items)  # ids outside the catalog vote for nothing
        rows = history.row_ids()[keep]
        back = (np.repeat(history.indptr[1:], history.lengths) - 1 - np.arange(len(history.items)))[keep]
        votes = np.power(self.config.decay, back.astype(np.float64))  # (N,) γ^(T - t); 0^0 = 1
        out = torch.zeros(len(history), n_items, dtype=torch.float64)  # (B, I)
        out.index_put_(
            (torch.from_numpy(rows), torch.from_numpy(history.items[keep].astype(np.int64))),
            torch.from_numpy(votes),
            accumulate=True,
        )
        return (out + self.config.pop_weight * self.popularity_.double()).float()  # (B, I)

    def _state(self) -> dict[str, torch.Tensor]:
        return {"popularity": self.popularity_}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.popularity_ = state["popularity"]
