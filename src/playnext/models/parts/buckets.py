"""Rows of similar length together, so that a batch pads to its own rows instead of the longest
history it happens to hold: length-bucketed training batches (`length_buckets=k`) and
longest-first scoring chunks.

Bucketed batches hold unequal numbers of positions, so each batch's mean loss is re-weighted by
its share of the epoch's positions (the loop's `LOSS_SCALE`): the objective stays the
per-position mean it is without buckets (ML-1M rows average 108 of 200 positions).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from playnext.data.interactions import Histories
from playnext.train import batches as B

# rows per forward pass when scoring: bounds attention memory, and with rows longest first a
# smaller chunk pads less (ML-1M SASRec, all users on 2 CPU cores: 128 rows took 45 % fewer
# CPU-seconds than 512, benchmarks/library_api.py)
SCORE_CHUNK = 128


def training_groups(
    order: np.ndarray, terms: np.ndarray, batch_size: int, pool: int, rng: np.random.Generator
) -> tuple[list[np.ndarray], float]:
    """One epoch's batches of the shuffled row `order`, and the mean loss terms per batch that
    `loss_scale` divides by (0.0: plain slices, no re-weighting). `terms` counts each row's
    positions with a next item; `pool` batches at a time are sorted by length (0: none)."""
    if not pool:
        return [order[sl] for sl in B.batch_slices(len(order), batch_size)], 0.0
    groups = B.length_buckets(order, terms, batch_size, pool, rng)
    return groups, float(terms[order].sum()) / max(1, len(groups))


def loss_scale(terms: np.ndarray, mean_terms: float) -> torch.Tensor:
    """0-d weight of a batch whose rows have `terms` positions: its share of the epoch's."""
    return torch.tensor(float(terms.sum()) / mean_terms)


def score_chunks(history: Histories, max_len: int) -> Iterator[np.ndarray]:
    """Row indices per scoring forward pass, longest rows first, so that a chunk pads only to
    its own rows; callers put each chunk's scores back at these indices."""
    order = B.longest_first(history, max_len)
    for sl in B.batch_slices(len(order), SCORE_CHUNK):
        yield order[sl]
