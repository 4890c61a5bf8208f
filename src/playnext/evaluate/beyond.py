"""Beyond-accuracy metrics of top-k lists: diversity, miscalibration, coverage, novelty.

A list is a row of catalog indices, best first, padded with -1 (a user with fewer candidates
than k). Per-user values are NaN where a metric is undefined (a list of fewer than two items has
no pairs; a history without genres has no mix to match); means skip them.

* intra-list diversity: the mean over the list's pairs of 1 − similarity, with similarity the
  Jaccard index of the two items' genre sets, or the cosine of their vectors;
* miscalibration: KL(p ‖ q̃), p the history's genre mix and q the list's (each item's genres
  weighted 1/|genres|), q̃ = (1 − α)·q + α·p — the quantity calibration minimises (Steck 2018);
* catalog coverage: the share of the catalog that appears in at least one list;
* novelty: the mean over the list of −log2(popularity share), the share as in the protocol's
  Novelty@K (training counts, at least 1, over their sum).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from playnext.data.interactions import Histories
from playnext.rerank.features import DEFAULT_ALPHA, By, ItemFeatures, normalise_rows

ROWS_PER_CHUNK = 512


def genre_diversity(lists: np.ndarray, features: ItemFeatures) -> np.ndarray:
    """(B,) mean pairwise 1 − Jaccard(genres) per list (NaN below two items; two items without
    genres count as dissimilar: nothing says they are alike)."""
    i, j, row = _pairs(lists)
    out = np.full(len(lists), np.nan)
    if not len(row):
        return out
    g = features.genre_bin
    a, b = g[lists[row, i]], g[lists[row, j]]
    inter = np.asarray(a.multiply(b).sum(axis=1)).ravel()
    size = np.asarray(g.sum(axis=1)).ravel()
    union = size[lists[row, i]] + size[lists[row, j]] - inter
    jac = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return _mean_per_row(1.0 - jac, row, len(lists), out)


def embedding_diversity(lists: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(B,) mean pairwise 1 − cosine of the items' vectors per list (NaN below two items)."""
    i, j, row = _pairs(lists)
    out = np.full(len(lists), np.nan)
    if not len(row):
        return out
    v = normalise_rows(vectors)
    cos = (v[lists[row, i]] * v[lists[row, j]]).sum(1).astype(np.float64)
    return _mean_per_row(1.0 - cos, row, len(lists), out)


def miscalibration(
    lists: np.ndarray,
    histories: Histories,
    features: ItemFeatures,
    by: By = "genre",
    alpha: float = DEFAULT_ALPHA,
) -> np.ndarray:
    """(B,) KL(p ‖ (1 − α)q + αp) between each history's category mix and its list's (NaN
    where the history has no categories)."""
    shares = features.categories(by)
    out = np.full(len(lists), np.nan)
    for s in range(0, len(lists), ROWS_PER_CHUNK):
        rows = np.arange(s, min(len(lists), s + ROWS_PER_CHUNK))
        p = _normalised(_indicator(histories.take(rows), shares.shape[0]) @ shares)  # (b, C)
        shown = lists[rows]
        q = _normalised(_indicator(_rows_of(shown), shares.shape[0]) @ shares)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * (np.log(p) - np.log((1 - alpha) * q + alpha * p)), 0.0)
        kl = terms.sum(1)
        kl[p.sum(1) == 0] = np.nan
        out[rows] = kl
    return out


def catalog_coverage(lists: np.ndarray, n_items: int) -> float:
    """Share of the `n_items` catalog that appears in at least one list."""
    shown = np.unique(lists[lists >= 0])
    return len(shown) / max(1, n_items)


def novelty(lists: np.ndarray, item_counts: np.ndarray) -> np.ndarray:
    """(B,) mean self-information −log2(popularity share) of each list's items (NaN if empty)."""
    share = np.maximum(item_counts, 1) / max(float(np.asarray(item_counts).sum()), 1.0)
    info = -np.log2(share)
    ok = lists >= 0
    total = np.where(ok, info[np.where(ok, lists, 0)], 0.0).sum(1)
    n = ok.sum(1)
    return np.divide(total, n, out=np.full(len(lists), np.nan), where=n > 0)


# ---- helpers ------------------------------------------------------------------------------------------
def _pairs(lists: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (i < j) column pair of each row where both slots hold an item: (i, j, row)."""
    k = lists.shape[1] if lists.ndim == 2 else 0
    ii, jj = np.triu_indices(k, 1)
    ok = (lists[:, ii] >= 0) & (lists[:, jj] >= 0)  # (B, pairs)
    row, p = np.nonzero(ok)
    return ii[p], jj[p], row


def _mean_per_row(values: np.ndarray, row: np.ndarray, n_rows: int, out: np.ndarray) -> np.ndarray:
    total = np.bincount(row, weights=values, minlength=n_rows)
    count = np.bincount(row, minlength=n_rows)
    np.divide(total, count, out=out, where=count > 0)
    return out


def _rows_of(lists: np.ndarray) -> Histories:
    return Histories.from_lists([r[r >= 0] for r in lists])


def _indicator(h: Histories, n: int) -> sp.csr_matrix:
    """(rows, n) counts of each item per row (a repeated item counts again)."""
    data = np.ones(len(h.items))
    return sp.csr_matrix((data, h.items.astype(np.int64), h.indptr), shape=(len(h), n))


def _normalised(m: sp.spmatrix) -> np.ndarray:
    d = np.asarray(m.todense(), dtype=np.float64)
    s = d.sum(1, keepdims=True)
    return np.divide(d, s, out=np.zeros_like(d), where=s > 0)
