"""EASE (Steck, WWW 2019): a closed-form item-item linear autoencoder.

    B = argmin ||X − XB||² + λ||B||²  s.t. diag(B) = 0   ⇒   P = (XᵀX + λI)⁻¹,  B = I − P·diag(1/diag(P))

A strong, simple baseline that many deep models fail to beat on MovieLens; λ is chosen on
validation from `search_space`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from playnext.config import require
from playnext.data.interactions import Histories, Interactions
from playnext.data.split import EvalSet
from playnext.models.base import ModelConfig, Recommender, histories_to_csr
from playnext.models.registry import register


@dataclasses.dataclass
class EASEConfig(ModelConfig):
    l2: float = 500.0

    def validate(self) -> None:
        require(self.l2 > 0, f"EASE l2 must be > 0, got {self.l2}")


@register("ease")
class EASE(Recommender):
    config_class = EASEConfig
    config: EASEConfig

    @classmethod
    def search_space(cls) -> list[dict[str, Any]]:
        return [{"l2": v} for v in (500.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 2000.0, 4000.0, 8000.0)]

    def _fit(self, train: Interactions, valid: EvalSet | None) -> None:
        n = train.n_items
        x = histories_to_csr(train.sequences(), n)
        x.data[:] = 1.0
        x.sum_duplicates()
        x.data[:] = 1.0  # binary: repeated plays count once
        # float64 where it is cheap; float32 for big catalogs (memory n² · 4 bytes)
        dtype = torch.float64 if n <= 8000 else torch.float32
        g = torch.from_numpy((x.T @ x).toarray()).to(dtype)  # (I, I)
        g.diagonal().add_(self.config.l2)
        p = torch.linalg.inv(g)
        del g
        b = p / (-p.diagonal())[None, :]  # B_ij = -P_ij / P_jj
        b.diagonal().zero_()
        self.b_ = b.float()

    def item_item(self) -> torch.Tensor | None:
        return self.b_

    def _score(self, users: np.ndarray, history: Histories) -> torch.Tensor:
        x = torch.zeros(len(history), self.b_.shape[0])  # (B, I) binary history
        x[torch.from_numpy(history.row_ids()), torch.from_numpy(history.items.astype(np.int64))] = 1.0
        return x @ self.b_  # dense GEMM: far faster than sparse mm at these densities

    def _state(self) -> dict[str, torch.Tensor]:
        return {"B": self.b_}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.b_ = state["B"]
