"""Full-ranking top-K metrics from score matrices, vectorised and exact under ties.

A target's rank is 1 + (candidates scoring strictly higher) + its place among equal scores.
How that place is chosen is the `ties` policy:

* ``expected`` (default) — the exact expectation under a uniformly random order of tied
  items. A model that gives every item the same score gets chance-level metrics, never
  perfect ones (the "optimistic ties" bug of several toolkits), and the number does not
  depend on sort stability or hardware.
* ``pessimistic`` — the target is placed after every tied item.
* ``optimistic`` — before every tied item (reported only for comparison with papers that do so).

Excluded (already-seen) items are not candidates. A target that is itself excluded counts as
a miss. For several targets per user (temporal splits) NDCG and Recall sum over targets, HR
and MRR use the best target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from playnext.data.interactions import Histories

Ties = Literal["expected", "pessimistic", "optimistic"]
TIES: tuple[str, ...] = ("expected", "pessimistic", "optimistic")


@dataclass
class TargetRanks:
    """For each (user row, target) pair: candidates strictly above, and other candidates tied."""

    row: np.ndarray  # (M,) row in the score batch
    greater: np.ndarray  # (M,)
    ties: np.ndarray  # (M,)
    miss: np.ndarray  # (M,) bool: target excluded or scored -inf


def mask_excluded(scores: torch.Tensor, exclude: Histories) -> torch.Tensor:
    """Scores with each row's excluded items set to -inf (in place on a float tensor)."""
    if len(exclude.items):
        rows = torch.from_numpy(exclude.row_ids())
        cols = torch.from_numpy(exclude.items.astype(np.int64))
        scores[rows, cols] = float("-inf")
    return scores


def repeat_targets(history: Histories, targets: Histories, n_items: int) -> np.ndarray:
    """(M,) bool: whether each target (in `targets`' stored order) is already in its row's history."""
    seen = history.row_ids() * n_items + history.items.astype(np.int64)  # (H,) row-item keys
    wanted = targets.row_ids() * n_items + targets.items.astype(np.int64)  # (M,)
    return np.isin(wanted, seen)


def rank_targets(scores: torch.Tensor, targets: Histories, chunk: int = 1 << 18) -> TargetRanks:
    """Count, for every target, candidates with higher and with equal score (already masked).

    Rows are compared in blocks of about `chunk` scores (1 MiB of float32), small enough to stay
    in cache while they are checked for NaN and compared twice, with numpy's `count_nonzero`
    (torch sums booleans through int64, several times slower on CPU).
    """
    t = scores.detach().cpu()
    s = (t if t.dtype in (torch.float32, torch.float64) else t.float()).numpy()  # (B, N), no copy
    row = targets.row_ids()
    cols = targets.items.astype(np.int64)
    target_scores = s[row, cols]  # (M,)
    n_items = s.shape[1]
    greater = np.empty(len(row), dtype=np.int64)
    equal = np.empty(len(row), dtype=np.int64)
    step = max(1, chunk // max(1, n_items))
    single = len(row) == s.shape[0] and bool((row == np.arange(len(row))).all())
    if not single and np.isnan(s).any():  # rows without a target are not visited below
        raise ValueError("model produced NaN scores")
    for start in range(0, len(row), step):
        sl = slice(start, start + step)
        # one target per row (leave-one-out): compare the rows in place, no gather copy
        block = s[sl] if single else s[row[sl]]  # (m, N)
        if single and np.isnan(block).any():
            raise ValueError("model produced NaN scores")
        ts = target_scores[sl, None]
        greater[sl] = np.count_nonzero(block > ts, axis=1)
        equal[sl] = np.count_nonzero(block == ts, axis=1) - 1  # the target itself is not a tie
    miss = np.isneginf(target_scores)
    return TargetRanks(row, greater, equal, miss)


class _Tables:
    """Prefix sums of 1/log2(r+1) and 1/r, so expected metrics over tie ranges are O(1)."""

    def __init__(self, n: int) -> None:
        r = np.arange(1, n + 2, dtype=np.float64)
        self.dcg = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(r + 1))])  # dcg[m] = sum_{r<=m}
        self.harm = np.concatenate([[0.0], np.cumsum(1.0 / r)])


_TABLES: dict[int, _Tables] = {}


def _tables(n: int) -> _Tables:
    if n not in _TABLES or len(_TABLES) > 8:
        if len(_TABLES) > 8:
            _TABLES.clear()
        _TABLES[n] = _Tables(n)
    return _TABLES[n]


def target_metrics(ranks: TargetRanks, ks: Sequence[int], ties: Ties, n_items: int) -> dict[str, np.ndarray]:
    """Per-target hit, DCG and reciprocal rank (expectations under the ties policy)."""
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    g = ranks.greater.astype(np.int64)
    t = ranks.ties.astype(np.int64)
    if ties == "pessimistic":
        g, t = g + t, np.zeros_like(t)
    elif ties == "optimistic":
        t = np.zeros_like(t)
    tab = _tables(n_items)
    width = (t + 1).astype(np.float64)
    hit_ok = ~ranks.miss
    out: dict[str, np.ndarray] = {}
    last = g + t + 1  # worst possible rank in the tie range
    out["rr"] = np.where(hit_ok, (tab.harm[last] - tab.harm[g]) / width, 0.0)
    for k in ks:
        top = np.minimum(last, k)
        inside = g < k
        out[f"hit@{k}"] = np.where(hit_ok & inside, (top - g) / width, 0.0)
        out[f"dcg@{k}"] = np.where(hit_ok & inside, (tab.dcg[top] - tab.dcg[np.minimum(g, k)]) / width, 0.0)
    out["rank"] = np.where(hit_ok, g + 1 + t / 2.0, np.inf)
    return out


def user_metrics(
    ranks: TargetRanks, n_rows: int, n_targets: np.ndarray, ks: Sequence[int], ties: Ties, n_items: int
) -> dict[str, np.ndarray]:
    """Aggregate per-target numbers into per-user HR@K, NDCG@K, Recall@K and MRR."""
    per = target_metrics(ranks, ks, ties, n_items)
    tab = _tables(max(n_items, int(n_targets.max(initial=1))))
    out: dict[str, np.ndarray] = {}
    rr = np.zeros(n_rows)
    np.maximum.at(rr, ranks.row, per["rr"])
    out["MRR"] = rr
    denom = np.maximum(n_targets, 1).astype(np.float64)
    for k in ks:
        hits = np.bincount(ranks.row, weights=per[f"hit@{k}"], minlength=n_rows)
        best = np.zeros(n_rows)
        np.maximum.at(best, ranks.row, per[f"hit@{k}"])
        dcg = np.bincount(ranks.row, weights=per[f"dcg@{k}"], minlength=n_rows)
        idcg = tab.dcg[np.minimum(n_targets, k)]
        out[f"HR@{k}"] = best
        out[f"NDCG@{k}"] = np.divide(dcg, idcg, out=np.zeros(n_rows), where=idcg > 0)
        out[f"Recall@{k}"] = hits / denom
    if ties == "expected":
        _expected_best_target(ranks, n_rows, ks, out)
    return out


def _expected_best_target(
    ranks: TargetRanks, n_rows: int, ks: Sequence[int], out: dict[str, np.ndarray]
) -> None:
    """Exact expected HR@K and MRR when several targets share the best tie group.

    HR and MRR depend on the best-ranked target, and the expectation of a maximum is not the
    maximum of expectations: with m targets among w tied candidates (g candidates above), the
    best rank is g + J with J the smallest of m uniform distinct positions in 1..w, so
    P(J = j) = C(w-j, m-1) / C(w, m). Only the highest-scoring group holding a (non-missed)
    target matters; every other target ranks below it. Targets within a row are distinct.
    """
    ok = ~ranks.miss
    rows = ranks.row[ok]
    g = ranks.greater[ok].astype(np.int64)
    w = ranks.ties[ok].astype(np.int64) + 1
    best_g = np.full(n_rows, np.iinfo(np.int64).max)
    np.minimum.at(best_g, rows, g)
    in_best = g == best_g[rows]
    m = np.bincount(rows[in_best], minlength=n_rows)
    width = np.zeros(n_rows, dtype=np.int64)
    width[rows[in_best]] = w[in_best]
    for r in np.flatnonzero(m >= 2):  # m == 1 is already exact
        mr, wr, gr = int(m[r]), int(width[r]), int(best_g[r])
        j = np.arange(1, wr - mr + 2, dtype=np.float64)
        # P(J=1) = m/w, P(J=j+1)/P(J=j) = (w-j-m+1)/(w-j)
        p = np.concatenate([[mr / wr], (wr - j[:-1] - mr + 1) / (wr - j[:-1])]).cumprod()
        out["MRR"][r] = float((p / (gr + j)).sum())
        for k in ks:
            out[f"HR@{k}"][r] = float(p[: max(0, k - gr)].sum())


def topk_items(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k item ids per row; ties broken by lower item id (deterministic)."""
    k = min(k, scores.shape[1])
    # stable descending sort keeps lower ids first among equal scores
    return (
        torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        if k * 8 > scores.shape[1]
        else _topk_stable(scores, k)
    )


def _topk_stable(scores: torch.Tensor, k: int) -> torch.Tensor:
    # take a few more than k with topk, then order those stably; exact unless > 4k tie at the cut
    vals, idx = torch.topk(scores, min(scores.shape[1], 4 * k), dim=1)
    kth = vals[:, k - 1 : k]
    # if ties at the cut extend past the fetched window, fall back to a full stable sort
    if bool((vals[:, -1:] == kth).any()):
        return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    order = torch.argsort(idx, dim=1)  # by id, then stably by score below
    idx_sorted = torch.gather(idx, 1, order)
    vals_sorted = torch.gather(vals, 1, order)
    pos = torch.sort(vals_sorted, dim=1, descending=True, stable=True).indices
    return torch.gather(idx_sorted, 1, pos)[:, :k]
