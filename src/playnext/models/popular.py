"""Most-popular baseline: every user gets the items most often seen in *training*."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from playnext.data.interactions import Histories, Interactions
from playnext.data.split import EvalSet
from playnext.models.base import ModelConfig, Recommender
from playnext.models.registry import register


@dataclasses.dataclass
class PopularConfig(ModelConfig):
    """No knobs: popularity is the count of training interactions per item."""


@register("popular")
class Popular(Recommender):
    """Counts over training interactions only — never validation or test — so it cannot leak."""

    config_class = PopularConfig

    def _fit(self, train: Interactions, valid: EvalSet | None) -> None:
        self.counts_ = torch.from_numpy(train.item_counts().astype(np.float32))

    def _score(self, users: np.ndarray, history: Histories) -> torch.Tensor:
        return self.counts_.expand(len(users), -1).clone()  # (B, I)

    def _state(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts_}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.counts_ = state["counts"]
