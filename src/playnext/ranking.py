"""The one ranking path: scores → mask → re-rank or top-k → lists; cold items' text neighbours;
item text.

The Python API (`playnext.api`), `playnext recommend`, batch output, the service and the ONNX
export's check all turn scores into lists here, so they cannot disagree: the same model, user and
options give the same items in the same order everywhere.

Rules, in this order:
1. an item is a candidate only if its score is finite, it is allowed (filters), and — with
   `exclude_seen` — it is not in the row's history; a NaN score counts as -inf;
2. with an active re-rank spec, the re-ranker (`playnext.rerank`) picks the list from the
   candidates; otherwise the k best candidates, best first, ties broken by the lower index;
3. a row with fewer than k candidates gets a shorter list (padded with -1 in `Lists.items`):
   an excluded item never comes back, whatever k is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch

from playnext.data.interactions import Columns, Histories
from playnext.rerank import ItemFeatures, RerankSpec, rerank
from playnext.text import borrow_weights, item_text


@dataclass(frozen=True)
class Lists:
    """Each row's ranked catalog indices and their model scores; rows shorter than k are padded
    (`items` with -1, `scores` with NaN). `summaries` says what re-ranking did, per row."""

    items: np.ndarray  # (B, k) int64
    scores: np.ndarray  # (B, k) float32
    summaries: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Row `r`'s list without padding: (items, scores)."""
        keep = self.items[r] >= 0
        return self.items[r][keep], self.scores[r][keep]

    def long(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The lists in long form, rows in order and ranks ascending: (row, rank 1..k, item, score)."""
        row, pos = np.nonzero(self.items >= 0)
        return row, pos + 1, self.items[row, pos], self.scores[row, pos]


def mask(
    scores: torch.Tensor,
    seen: Histories | None = None,
    allowed: np.ndarray | torch.Tensor | None = None,
) -> torch.Tensor:
    """`scores` (B, I) with every non-candidate set to -inf, in place: NaN scores, items outside
    `allowed` ((I,) or (B, I) bool) and each row's `seen` items."""
    scores.masked_fill_(torch.isnan(scores), float("-inf"))  # nan_to_num would also clip ±inf
    if allowed is not None:
        ok = torch.as_tensor(allowed, dtype=torch.bool)
        scores.masked_fill_(~ok[..., : scores.shape[1]].expand_as(scores), float("-inf"))
    if seen is not None and len(seen.items):
        items = seen.items.astype(np.int64)
        inside = items < scores.shape[1]  # a history may name items the scores do not cover
        rows = torch.from_numpy(seen.row_ids()[inside])
        scores[rows, torch.from_numpy(items[inside])] = float("-inf")
    return scores


def top_k(scores: torch.Tensor, k: int) -> Lists:
    """Each row's k best finite scores, best first, ties broken by the lower index — exactly, even
    where a tie straddles the k-th place (`torch.topk` alone does not promise which tied item
    wins there). One `topk(k + 1)` settles every row whose k-th and next scores differ; only
    rows tied across the cut take the exact, slower path."""
    b, n = scores.shape
    k = max(0, min(k, n))
    items = np.full((b, k), -1, np.int64)
    out = np.full((b, k), np.nan, np.float32)
    if k == 0 or b == 0:
        return Lists(items, out)
    vals, idx = torch.topk(scores, min(k + 1, n), dim=1)  # (B, k + 1), sorted
    straddle = torch.zeros(b, dtype=torch.bool)
    if k < n:
        straddle = (vals[:, k - 1] == vals[:, k]) & torch.isfinite(vals[:, k - 1])
    easy = torch.nonzero(~straddle).flatten().numpy()
    if len(easy):
        v, c = vals[easy, :k].float().numpy(), idx[easy, :k].numpy()
        order = np.lexsort((c, -v), axis=1)  # within a row: score descending, then lower index
        v, c = np.take_along_axis(v, order, 1), np.take_along_axis(c, order, 1)
        finite = np.isfinite(v)  # non-finite scores sort last: the row's list ends there
        items[easy] = np.where(finite, c, -1)
        out[easy] = np.where(finite, v, np.nan)
    hard = torch.nonzero(straddle).flatten()
    if len(hard):
        sub = _top_k_exact(scores[hard], k)
        items[hard.numpy()], out[hard.numpy()] = sub.items, sub.scores
    return Lists(items, out)


def _top_k_exact(scores: torch.Tensor, k: int) -> Lists:
    """`top_k` for rows tied across the k-th place: the whole row's tied scores, lowest index first."""
    b = scores.shape[0]
    kth = torch.topk(scores, k, dim=1, sorted=False).values.min(dim=1, keepdim=True).values  # (B, 1)
    above = scores > kth  # (B, I): certainly in
    tied = scores == kth
    need = k - above.sum(1, keepdim=True)  # (B, 1) places left for the tied, lowest index first
    take = above | (tied & (tied.cumsum(1) <= need))
    take &= torch.isfinite(scores)
    rows, cols = take.nonzero(as_tuple=True)  # row-major, cols ascending
    r, c, v = rows.numpy(), cols.numpy(), scores[rows, cols].float().numpy()
    order = np.lexsort((c, -v, r))  # per row: score descending, then lower index
    r, c, v = r[order], c[order], v[order]
    counts = np.bincount(r, minlength=b)
    starts = np.zeros(b, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    pos = np.arange(len(r)) - starts[r]
    items = np.full((b, k), -1, np.int64)
    out = np.full((b, k), np.nan, np.float32)
    items[r, pos], out[r, pos] = c, v
    return Lists(items, out)


def rank(
    scores: torch.Tensor,
    k: int,
    *,
    seen: Histories | None = None,
    allowed: np.ndarray | torch.Tensor | None = None,
    rerank_spec: RerankSpec | None = None,
    features: ItemFeatures | None = None,
    history: Histories | None = None,
) -> Lists:
    """Lists from (B, I) scores: `mask` (seen items when `seen` is given, `allowed`), then the
    re-ranker when `rerank_spec` is active (with `features`; `history` is what calibration and
    novelty read, `seen` by default), else `top_k`. `scores` is changed in place."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    s = mask(scores, seen, allowed)
    if rerank_spec is None or not rerank_spec.active:
        return top_k(s, k)
    if features is None:
        raise ValueError("re-ranking needs the catalog's ItemFeatures")
    hist = history if history is not None else seen
    arr = s.numpy()
    items = np.full((len(arr), k), -1, np.int64)
    values = np.full((len(arr), k), np.nan, np.float32)
    summaries = []
    for r in range(len(arr)):
        cand = np.flatnonzero(np.isfinite(arr[r]))
        past = hist[r] if hist is not None else np.zeros(0, np.int64)
        done = rerank(arr[r][cand], cand, past, features, rerank_spec, k)
        got = done.items[:k]
        items[r, : len(got)], values[r, : len(got)] = got, arr[r][got]
        summaries.append(done.summary(rerank_spec))
    return Lists(items, values, summaries)


# ---- cold items: what a new item borrows from the known ones ------------------------------------
def item_texts(meta: pl.DataFrame) -> list[str]:
    """What each item of a metadata frame says (`playnext.text.item_text`), in row order: the
    text the server's index, cold-item neighbours, retraining and the content tower all read."""
    c = Columns
    cols = [c.TITLE, c.KIND, c.GENRES, c.YEAR]
    have = meta.with_columns(*(pl.lit(None).alias(col) for col in cols if col not in meta.columns))
    return [
        item_text(title, kind or None, list(genres) if genres is not None else None, year)
        for title, kind, genres, year in have.select(cols).iter_rows()
    ]


def cold_neighbours(
    new: np.ndarray, known: np.ndarray, k: int, temperature: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each new item's k nearest known items by text (rows L2-normalised, so inner product is
    cosine), nearest first, ties to the lower index, with the softmax weights of their
    similarities at `temperature`: (C, k) indices and (C, k) weights."""
    k = min(k, known.shape[0])
    if len(new) == 0 or k == 0:
        return np.zeros((len(new), k), np.int64), np.zeros((len(new), k), np.float32)
    sims = torch.from_numpy(np.ascontiguousarray(new @ known.T, dtype=np.float32))  # (C, K)
    lists = top_k(sims, k)
    return lists.items, borrow_weights(lists.scores, temperature)


def borrowed_scores(known: np.ndarray, nn: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(C,) cold items' scores: their neighbours' `known` scores averaged by `w` (over the
    finite ones; -inf when a cold item has none)."""
    nb = known[nn]  # (C, k)
    finite = np.isfinite(nb)
    ww = np.where(finite, w, 0.0)
    out = (np.where(finite, nb, 0.0) * ww).sum(1) / np.maximum(ww.sum(1), 1e-12)
    out[~finite.any(1)] = -np.inf
    return out.astype(np.float32)


__all__ = [
    "Lists",
    "borrowed_scores",
    "cold_neighbours",
    "item_texts",
    "mask",
    "rank",
    "top_k",
]
