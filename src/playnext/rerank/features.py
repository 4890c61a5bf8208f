"""What re-rankers and beyond-accuracy metrics know about items: genres, kind, popularity, vectors.

Genres are held twice as sparse (n, G) matrices: `genre_share` weights each of an item's genres
1/|genres| (so every item with genres has mass 1, and a history's genre mix is not dominated by
items tagged with many genres — Steck 2018, eq. 1), `genre_bin` is 0/1 (for Jaccard similarity
and per-genre counts). Kinds (movie, music, game) are one category per item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
import scipy.sparse as sp

from playnext.data.interactions import Columns

By = Literal["genre", "kind"]
DENSE_LIMIT = 1 << 21  # items × categories kept dense (16 MiB of float64)
DEFAULT_ALPHA = 0.01
"""Steck's smoothing: the list's mix is q̃ = (1 − α)·q + α·p, so KL(p‖q̃) stays finite."""


@dataclass(frozen=True)
class ItemFeatures:
    """Per-item facts in catalog order (row i = item i)."""

    genre_names: list[str]
    genre_share: sp.csr_matrix  # (n, G) rows sum to 1 (or 0: no genres)
    genre_bin: sp.csr_matrix  # (n, G) 0/1
    kind_names: list[str]
    kinds: np.ndarray  # (n,) int64 index into kind_names, -1 when unknown
    popularity: np.ndarray  # (n,) float64 training interactions
    vectors: np.ndarray | None = None  # (n, D) float32, rows L2-normalised (zero rows stay zero)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n(self) -> int:
        return len(self.kinds)

    @classmethod
    def from_lists(
        cls,
        genres: Sequence[Sequence[str]],
        kinds: Sequence[str | None],
        popularity: np.ndarray | None = None,
        vectors: np.ndarray | None = None,
    ) -> ItemFeatures:
        n = len(genres)
        if len(kinds) != n:
            raise ValueError(f"{len(kinds)} kinds for {n} items")
        genre_names = sorted({g for gs in genres for g in gs})
        gid = {g: j for j, g in enumerate(genre_names)}
        rows = [sorted({gid[g] for g in gs}) for gs in genres]
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=indptr[1:])
        cols = np.fromiter((j for r in rows for j in r), dtype=np.int64, count=int(indptr[-1]))
        counts = np.diff(indptr)
        share = np.repeat(1.0 / np.maximum(counts, 1), counts)
        shape = (n, len(genre_names))
        kind_names = sorted({k for k in kinds if k})
        kid = {k: j for j, k in enumerate(kind_names)}
        pop = np.zeros(n) if popularity is None else np.asarray(popularity, dtype=np.float64)
        if len(pop) != n:
            raise ValueError(f"{len(pop)} popularity counts for {n} items")
        return cls(
            genre_names=genre_names,
            genre_share=sp.csr_matrix((share, cols, indptr), shape=shape),
            genre_bin=sp.csr_matrix((np.ones(len(cols)), cols, indptr), shape=shape),
            kind_names=kind_names,
            kinds=np.array([kid[k] if k else -1 for k in kinds], dtype=np.int64),
            popularity=pop,
            vectors=None if vectors is None else normalise_rows(vectors),
        )

    @classmethod
    def from_meta(
        cls, meta: pl.DataFrame, popularity: np.ndarray | None = None, vectors: np.ndarray | None = None
    ) -> ItemFeatures:
        """From an `Interactions.meta` frame (one row per item, internal order)."""
        c = Columns
        genres = [g or [] for g in meta.get_column(c.GENRES).to_list()]
        kinds = meta.get_column(c.KIND).to_list() if c.KIND in meta.columns else [None] * meta.height
        return cls.from_lists(genres, kinds, popularity, vectors)

    def categories(self, by: By) -> sp.csr_matrix:
        """(n, C) category shares: genres weighted 1/|genres|, or the kind one-hot."""
        if by == "genre":
            return self.genre_share
        if "kind" not in self._cache:
            idx = np.flatnonzero(self.kinds >= 0)
            shape = (self.n, max(1, len(self.kind_names)))
            self._cache["kind"] = sp.csr_matrix((np.ones(len(idx)), (idx, self.kinds[idx])), shape=shape)
        out: sp.csr_matrix = self._cache["kind"]
        return out

    def members(self, by: By) -> sp.csc_matrix:
        """The same matrix by column: which items carry each category (computed once)."""
        key = f"csc-{by}"
        if key not in self._cache:
            self._cache[key] = self.categories(by).tocsc()
        out: sp.csc_matrix = self._cache[key]
        return out

    def dense(self, by: By) -> np.ndarray | None:
        """The category matrix as a dense array when it is small (genres of a film catalog),
        else None: numpy row gathers cost microseconds where sparse slicing costs ~100 µs."""
        key = f"dense-{by}"
        if key not in self._cache:
            m = self.categories(by)
            self._cache[key] = m.toarray() if m.shape[0] * m.shape[1] <= DENSE_LIMIT else None
        out: np.ndarray | None = self._cache[key]
        return out

    def block(self, by: By, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Dense (len(rows), len(cols)) category shares."""
        d = self.dense(by)
        if d is not None:
            return d[np.ix_(rows, cols)]
        return self.categories(by)[rows][:, cols].toarray()

    def mass(self, by: By) -> np.ndarray:
        """(n,) each item's total category share: 1 with categories, 0 without."""
        key = f"mass-{by}"
        if key not in self._cache:
            self._cache[key] = np.asarray(self.categories(by).sum(axis=1)).ravel()
        out: np.ndarray = self._cache[key]
        return out

    def n_categories(self, by: By) -> np.ndarray:
        """(n,) how many categories each item carries (0 without any)."""
        key = f"count-{by}"
        if key not in self._cache:
            self._cache[key] = np.diff(self.categories(by).indptr)
        out: np.ndarray = self._cache[key]
        return out

    def history_mix(self, history: np.ndarray, by: By = "genre") -> np.ndarray:
        """p: the category distribution of `history` (dense (C,), sums to 1, or all 0)."""
        d = self.dense(by)
        if d is None:
            return mix(self.categories(by), history)
        h = np.asarray(history, dtype=np.int64)
        total = d[h[(h >= 0) & (h < self.n)]].sum(0)
        s = total.sum()
        return total / s if s > 0 else total


def mix(shares: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
    """The normalised category distribution of `items` (repeats count; all 0 if none has one)."""
    items = np.asarray(items, dtype=np.int64)
    items = items[(items >= 0) & (items < shares.shape[0])]
    total = np.asarray(shares[items].sum(axis=0)).ravel() if len(items) else np.zeros(shares.shape[1])
    s = total.sum()
    return total / s if s > 0 else total


def smoothed_kl(p: np.ndarray, q: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """KL(p ‖ (1 − α)q + αp) over the last axis; q may be (…, C) against p (C,)."""
    support = p > 0
    ps = p[support]
    qt = (1.0 - alpha) * q[..., support] + alpha * ps
    return np.asarray((ps * (np.log(ps) - np.log(qt))).sum(-1))


def normalise_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
