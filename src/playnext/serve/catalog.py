"""The servable catalog: the model's items (internal order) followed by cold-start items added live.

Catalog index i < n_known is the model's internal item id; i >= n_known is a cold-start item
that the model has never seen and that is scored through its text embedding.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from playnext.data.interactions import META_SCHEMA, Columns
from playnext.ranking import item_texts
from playnext.serve.errors import Conflict, QueryError, UnknownIds


@dataclass(frozen=True)
class ItemRecord:
    item_id: str
    title: str
    kind: str | None
    genres: list[str]
    year: int | None


class Catalog:
    """Item metadata as plain arrays, append-only (appends take the lock; reads are lock-free)."""

    def __init__(self, meta: pl.DataFrame) -> None:
        c = Columns
        n = meta.height

        def col(name: str) -> list[Any]:
            return meta.get_column(name).to_list() if name in meta.columns else [None] * n

        self.ids: list[str] = [str(x) for x in col(c.ITEM_ID)]
        self.titles: list[str] = [
            str(t) if t is not None else i for t, i in zip(col(c.TITLE), self.ids, strict=True)
        ]
        self.kinds: list[str | None] = col(c.KIND)
        self.genres: list[list[str]] = [list(g) if g is not None else [] for g in col(c.GENRES)]
        years = col(c.YEAR)
        self.years: list[int | None] = [int(y) if y is not None else None for y in years]
        self.lookup: dict[str, int] = {k: i for i, k in enumerate(self.ids)}
        self._by_kind: dict[str, list[int]] = {}
        self._by_genre: dict[str, list[int]] = {}
        self._year_arr = np.array([np.nan if y is None else y for y in self.years], dtype=np.float64)
        self._titles_lower = pl.Series("t", [t.lower() for t in self.titles], dtype=pl.String)
        for i in range(n):
            self._index(i)
        self._lock = threading.Lock()
        self.n_known = n  # the model's items; later rows are cold-start items

    def __len__(self) -> int:
        return len(self.ids)

    def _index(self, i: int) -> None:
        kind = self.kinds[i]
        if kind is not None:
            self._by_kind.setdefault(kind, []).append(i)
        for g in self.genres[i]:
            self._by_genre.setdefault(g, []).append(i)

    # ---- lookups ---------------------------------------------------------------------------
    def record(self, i: int) -> ItemRecord:
        return ItemRecord(self.ids[i], self.titles[i], self.kinds[i], self.genres[i], self.years[i])

    def item(self, i: int, **extra: Any) -> dict[str, Any]:
        """Item `i` as every answer shows it, with `extra` fields (rank, score, explanation…)."""
        r = self.record(i)
        return {
            "item_id": r.item_id,
            "title": r.title,
            "kind": r.kind,
            "genres": r.genres,
            "year": r.year,
            "cold_start": i >= self.n_known,
            **extra,
        }

    def texts(self, lo: int, hi: int) -> list[str]:
        """What rows lo..hi-1 say (`ranking.item_texts`), as the text index embeds them; an item
        without a title reads as its id, the title every answer shows."""
        return item_texts(meta_frame([self.record(i) for i in range(lo, hi)]))

    def indices(self, ids: Iterable[object], what: str = "item id(s)") -> np.ndarray:
        """Catalog indices of external ids (strings or numbers, as in the dataset); unknown ids raise."""
        keys = [str(i) for i in ids]
        out = np.fromiter((self.lookup.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        if (out < 0).any():
            missing = list(dict.fromkeys(k for k, v in zip(keys, out, strict=True) if v < 0))
            raise UnknownIds(what, missing)
        return out

    @property
    def kind_names(self) -> list[str]:
        return sorted(self._by_kind)

    @property
    def genre_names(self) -> list[str]:
        return sorted(self._by_genre)

    # ---- filters ---------------------------------------------------------------------------
    def mask(
        self,
        n: int,
        *,
        kinds: Sequence[str] | None = None,
        genres: Sequence[str] | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        exclude: np.ndarray | None = None,
        only: np.ndarray | None = None,
    ) -> np.ndarray:
        """Boolean (n,) mask of catalog rows passing every filter; unknown kinds/genres raise."""
        keep = np.ones(n, dtype=bool)
        if kinds:
            bad = [k for k in kinds if k not in self._by_kind]
            if bad:
                raise QueryError(f"unknown kind(s): {', '.join(bad)}; known: {', '.join(self.kind_names)}")
            keep &= _rows(n, (self._by_kind[k] for k in kinds))
        if genres:
            bad = [g for g in genres if g not in self._by_genre]
            if bad:
                raise QueryError(
                    f"unknown genre(s): {', '.join(bad[:10])}; known: {', '.join(self.genre_names[:50])}"
                )
            keep &= _rows(n, (self._by_genre[g] for g in genres))  # any of the genres
        if year_min is not None or year_max is not None:
            years = self._year_arr[:n]
            with np.errstate(invalid="ignore"):
                if year_min is not None:
                    keep &= years >= year_min
                if year_max is not None:
                    keep &= years <= year_max
        if exclude is not None and len(exclude):
            keep[exclude[exclude < n]] = False
        if only is not None:
            allowed = np.zeros(n, dtype=bool)
            allowed[only[only < n]] = True
            keep &= allowed
        return keep

    # ---- title search -------------------------------------------------------------------------
    def search_titles(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, match rank) for titles matching `query`: 0 exact, 1 prefix, 2 substring, 3 all words."""
        q = " ".join(query.lower().split())
        titles = self._titles_lower.head(n)
        rank = np.full(n, 9, dtype=np.int64)
        words = q.split()
        if words:
            all_words = np.ones(n, dtype=bool)
            for w in words:
                all_words &= titles.str.contains(w, literal=True).to_numpy()
            rank[all_words] = 3
        rank[titles.str.contains(q, literal=True).to_numpy()] = 2
        rank[titles.str.starts_with(q).to_numpy()] = 1
        rank[(titles == q).to_numpy()] = 0
        rows = np.flatnonzero(rank < 9)
        return rows, rank[rows]

    # ---- growth ----------------------------------------------------------------------------
    def append(self, rec: ItemRecord) -> int:
        with self._lock:
            if rec.item_id in self.lookup:
                raise Conflict(f"item id {rec.item_id} already exists")
            i = len(self.ids)
            self.titles.append(rec.title)
            self.kinds.append(rec.kind)
            self.genres.append(list(rec.genres))
            self.years.append(rec.year)
            self._year_arr = np.append(self._year_arr, np.nan if rec.year is None else rec.year)
            self._titles_lower = self._titles_lower.append(pl.Series("t", [rec.title.lower()]))
            self._index(i)
            self.ids.append(rec.item_id)  # last: readers size themselves by len(ids)
            self.lookup[rec.item_id] = i
            return i


def meta_frame(records: Sequence[ItemRecord]) -> pl.DataFrame:
    """Records as a metadata frame (`META_SCHEMA`): what item text and content towers read."""
    c = Columns
    cols = {
        c.ITEM_ID: [r.item_id for r in records],
        c.TITLE: [r.title for r in records],
        c.GENRES: [list(r.genres) for r in records],
        c.YEAR: [r.year for r in records],
        c.KIND: [r.kind for r in records],
    }
    return pl.DataFrame(cols, schema=META_SCHEMA)


def _rows(n: int, groups: Iterable[list[int]]) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    for g in groups:
        arr = np.asarray(g, dtype=np.int64)
        out[arr[arr < n]] = True
    return out
