"""Sparse item-table gradients (`sparse_embeddings=true`): only the rows a batch touches are
read and written, by SparseAdam (train/optim.py), which is what lets a 10M-item catalog train on
one machine. Sampled losses only: a full softmax touches every row anyway.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def sparse_rows(table: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Rows of the (I + 1, D) item `table` (row 0 padding) for 0-based item ids, as the loss
    gathers them: `F.embedding(sparse=True)` gives the table a sparse gradient, `table[ids]` not."""

    def rows(ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids + 1, table, sparse=True)  # (…, D)

    return rows
