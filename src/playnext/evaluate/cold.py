"""Scoring items no model was trained on: the cold-start protocol's metrics and its baselines.

A question of `ColdSplit.cold` is ranked twice: among every item (the W warm ones and the C
cold ones: can the cold answer reach the top of a real list?) and within the cold set alone
(given that the list must be new items, which one?). Scorers return (B, W + C) scores.

    borrowed_c = Σ_j w_cj · s_j,  j ∈ kNN_text(c),  w_c = softmax(cos(t_c, t_j) / τ)

is what serving does for a cold item under a model without a content tower (neighbour
borrowing); an id-only model alone cannot rank a cold item at all (its score is −∞).

A cold item's own events since it arrived are a signal no trained model has seen; serving adds

    s_c + w · log(1 + n_c),   n_c = the item's events so far (the state store's count)

with w chosen on validation questions (`choose_live_weight`), never on the test ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from playnext.data.interactions import Histories
from playnext.data.split import ColdSplit
from playnext.evaluate.protocol import Scorer, cached, evaluate, per_user

ALL, WITHIN = "all/", "cold/"


def evaluate_cold(
    scorer: Scorer, split: ColdSplit, *, ks: Sequence[int] = (10,), within_only: bool = False
) -> dict[str, float]:
    """Metrics of `scorer` on the cold questions: `all/…` among all items, `cold/…` within the
    cold set (ties count as expected, as everywhere). `within_only` skips `all/…`, for a scorer
    that only orders cold items (popularity within the cold set)."""
    n_warm, n = split.n_warm, split.n_warm + split.n_cold
    q = split.cold
    out: dict[str, float] = {}
    if not within_only:
        res = evaluate(scorer, q, n, ks=ks)
        out.update({ALL + k: v for k, v in res.metrics.items()})

    def cold_part(users: np.ndarray, history: Histories) -> torch.Tensor:
        return scorer(users, history)[:, n_warm:]

    no_seen = Histories(np.zeros(len(q) + 1, dtype=np.int64), np.zeros(0, dtype=np.int64))
    within = type(q)(q.users, q.history, Histories(q.targets.indptr, q.targets.items - n_warm), no_seen)
    res = evaluate(cold_part, within, split.n_cold, ks=ks)
    out.update({WITHIN + k: v for k, v in res.metrics.items()})
    out["questions"] = float(len(q))
    return out


def id_only(warm: Scorer, n_cold: int) -> Scorer:
    """A model without content: the cold items are in the list, tied below every warm item (not
    −∞, which marks an excluded item), so within the cold set they rank by chance."""

    def score(users: np.ndarray, history: Histories) -> torch.Tensor:
        s = warm(users, history)  # (B, W)
        floor = s.masked_fill(~torch.isfinite(s), torch.inf).min(1, keepdim=True).values - 1.0  # (B, 1)
        return torch.cat([s, floor.expand(len(s), n_cold)], 1)

    return score


def borrowing(warm: Scorer, neighbours: np.ndarray, weights: np.ndarray) -> Scorer:
    """Serving-time neighbour borrowing: cold item c scores the weighted mean of its (C, k)
    text `neighbours`' scores (weights from `playnext.ranking.cold_neighbours`)."""
    nb, w = torch.from_numpy(neighbours), torch.from_numpy(weights)

    def score(users: np.ndarray, history: Histories) -> torch.Tensor:
        s = warm(users, history)  # (B, W)
        borrowed = (s[:, nb] * w).sum(-1)  # (B, C)
        return torch.cat([s, borrowed], 1)

    return score


def _live_counts(split: ColdSplit) -> Callable[[np.ndarray], torch.Tensor]:
    """users → (B, C) each cold item's events before that user's question."""
    return per_user(torch.from_numpy(split.cold_counts), split.cold.users)


def cold_popularity(split: ColdSplit) -> Scorer:
    """Popularity within the cold set as a live system counts it: each cold item's events before
    the question's own time (no training); warm items at −∞."""
    counts = _live_counts(split)

    def score(users: np.ndarray, history: Histories) -> torch.Tensor:
        warm = torch.full((len(users), split.n_warm), -torch.inf)
        return torch.cat([warm, counts(users)], 1)

    return score


def with_live_counts(scorer: Scorer, split: ColdSplit, weight: float) -> Scorer:
    """`scorer` with w · log(1 + n_c) added to each cold item (n_c: its events before the
    question), as serving adds the state store's counts; warm items unchanged."""
    counts = _live_counts(split)

    def score(users: np.ndarray, history: Histories) -> torch.Tensor:
        s = scorer(users, history).clone()
        s[:, split.n_warm :] += weight * torch.log1p(counts(users))
        return s

    return score


LIVE_WEIGHTS = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def choose_live_weight(
    scorer: Scorer, valid: ColdSplit, weights: Sequence[float] = LIVE_WEIGHTS, metric: str = "cold/NDCG@10"
) -> tuple[float, dict[float, float]]:
    """The weight of live counts with the best validation `metric` (ties: the smaller weight),
    and every weight's value: the same choice a model's epoch gets, on questions never tested."""
    once = cached(scorer, valid.cold)
    seen = {w: evaluate_cold(with_live_counts(once, valid, w), valid)[metric] for w in weights}
    best = max(seen, key=lambda w: (seen[w], -w))
    return best, seen
