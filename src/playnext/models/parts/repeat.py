"""The learned re-listen bonus (`repeat_bonus=true`, docs/models.md): each item of the input
window adds a learned weight of how long ago it was to its own logit, so that returning to an
item is learned apart from taste:

    s'_t(i) = s_t(i) + Σ_{j ≤ t, item_j = i} β[bucket(t − j)],    bucket(d) = floor(log2(d + 1))

β (`SequenceNet.repeat_beta`, saved with the weights) starts at zero, so training starts from the
model without it. The full-softmax loss adds it at every position; scoring and serving at the last.
"""

from __future__ import annotations

import torch
from torch import nn

# Adam moves a parameter by about lr per step whatever its gradient: a handful of shared
# weights on the logit scale (top logits ≈ 10) would need thousands of steps to matter
GAIN = 10.0


def recency_buckets(max_len: int) -> int:
    """Log-spaced buckets of how many events ago: 0, 1, 2–3, 4–7, … up to `max_len` − 1."""
    return max(1, max_len).bit_length()


def recency_bucket(distance: torch.Tensor, n: int) -> torch.Tensor:
    """floor(log2(d + 1)) of each distance d ≥ 0, capped at n − 1 (exact: integer bit lengths)."""
    d = distance.long() + 1
    bucket = torch.zeros_like(d)
    for b in range(1, n):
        bucket += (d >= (1 << b)).long()
    return bucket


def new_beta(max_len: int) -> nn.Parameter:
    """(buckets,) β at zero: a net built with it scores as the net without it."""
    return nn.Parameter(torch.zeros(recency_buckets(max_len)))


def bonus(beta: torch.Tensor, seq: torch.Tensor, every_position: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """What returning adds to the scores of (B, T) left-padded ids, given the (buckets,) logit
    weights `beta`: (item ids, amounts) to scatter-add into the logits, each input item j adding
    β[bucket(t − j)] to its own logit at every later position t (or only the last,
    `every_position=False`); an item seen several times adds once per time. Shapes (B, T, T) or
    (B, T); ids are 0-based."""
    t = seq.shape[1]
    pos = torch.arange(t, device=seq.device)
    real = (seq > 0).to(beta.dtype)  # (B, T)
    ids = (seq - 1).clamp(min=0)
    if not every_position:
        return ids, beta[recency_bucket(t - 1 - pos, len(beta))][None] * real  # (B, T)
    dist = pos[:, None] - pos[None, :]  # (T, T) t − j
    w = beta[recency_bucket(dist.clamp(min=0), len(beta))] * (dist >= 0).to(beta.dtype)  # (T, T)
    return ids[:, None, :].expand(-1, t, -1), w[None] * real[:, None, :]  # (B, T, T)


def add_bonus(scores: torch.Tensor, ids: torch.Tensor, amounts: torch.Tensor) -> torch.Tensor:
    """(b, V) `scores` plus the (b, T) `amounts` at their item `ids` (from `bonus`)."""
    return scores.scatter_add(1, ids, amounts.to(scores.dtype))
