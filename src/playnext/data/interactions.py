"""The one core data abstraction: an interaction log with its id maps and item metadata.

External ids (what the dataset calls users and items) are mapped once, here, to dense
internal ints; models only ever see the ints and users of the API only ever see external ids.
Rows are kept in a *stable* per-user time order: by timestamp, ties by original file position.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from playnext.errors import UnknownIdError


class Columns:
    """Column names, from one place."""

    USER = "user"
    ITEM = "item"
    TIMESTAMP = "timestamp"
    POSITION = "position"
    WEIGHT = "weight"
    EVENT = "event"
    # item metadata
    ITEM_ID = "item_id"
    TITLE = "title"
    GENRES = "genres"
    YEAR = "year"
    KIND = "kind"


META_SCHEMA: dict[str, Any] = {
    Columns.ITEM_ID: pl.String,
    Columns.TITLE: pl.String,
    Columns.GENRES: pl.List(pl.String),
    Columns.YEAR: pl.Int32,
    Columns.KIND: pl.String,
}


class IdMap:
    """Bijection between external ids (kept as strings) and dense internal ints 0..n-1."""

    def __init__(self, external: Sequence[str] | np.ndarray | pl.Series) -> None:
        series = (
            pl.Series("external", external, dtype=pl.String)
            if not isinstance(external, pl.Series)
            else external.cast(pl.String).rename("external")
        )
        if series.n_unique() != len(series):
            raise ValueError("IdMap external ids must be unique")
        self.external: pl.Series = series
        self._lookup: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.external)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self.external.equals(other.external)

    def __hash__(self) -> int:  # pragma: no cover - identity hashing is enough
        return id(self)

    @property
    def lookup(self) -> dict[str, int]:
        if self._lookup is None:
            self._lookup = {k: i for i, k in enumerate(self.external.to_list())}
        return self._lookup

    def __contains__(self, external_id: object) -> bool:
        return str(external_id) in self.lookup

    def to_internal(self, ids: Iterable[object], kind: str = "item", strict: bool = True) -> np.ndarray:
        """Map external ids to internal ints; unknown ids raise (strict) or become -1."""
        lookup = self.lookup
        keys = [str(i) for i in ids]
        out = np.fromiter((lookup.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        if strict and (out < 0).any():
            raise UnknownIdError(kind, [k for k, v in zip(keys, out, strict=True) if v < 0])
        return out

    def to_external(self, idx: Iterable[int] | np.ndarray) -> list[str]:
        arr = np.asarray(list(idx) if not isinstance(idx, np.ndarray) else idx, dtype=np.int64)
        return self.external.gather(pl.Series(arr)).to_list() if len(arr) else []


@dataclass(frozen=True)
class Histories:
    """Ragged per-row item lists in CSR form (row r = items[indptr[r]:indptr[r+1]]).

    Typed logs also carry each item's event, aligned with `items`: `events` codes into
    `event_names` (-1 = untyped) and `values` (the event's value, NaN = none given). Models
    with an action embedding read them; every other model sees the items alone.

    `at` (optional, one int64 unix second per row) is when the question is asked: the request's
    time. A split gives each validation and test question its target event's timestamp, serving
    the request's time; models that read time (HSTU with `time_reference="request"`) measure the
    history's gaps to it, the others ignore it. It follows its rows through `take`, `select`
    (when the rows stay the same rows) and `concat_rows` (from the left side). `times`
    (optional, int64 unix seconds aligned with `items`) is when each history event happened, as
    a request knows it; kept by `take` and `select`, and by `concat_rows` when both sides have it.
    """

    indptr: np.ndarray
    items: np.ndarray
    events: np.ndarray | None = None  # (N,) int32 codes into event_names, -1 = untyped
    values: np.ndarray | None = None  # (N,) float32
    event_names: tuple[str, ...] = ()
    at: np.ndarray | None = None  # (rows,) int64 unix seconds: when each row's question is asked
    times: np.ndarray | None = None  # (N,) int64 unix seconds of each event

    def __post_init__(self) -> None:
        if self.indptr.ndim != 1 or self.indptr[0] != 0 or self.indptr[-1] != len(self.items):
            raise ValueError("malformed Histories: indptr must start at 0 and end at len(items)")
        if (self.events is None) != (self.values is None):
            raise ValueError("malformed Histories: give events and values together")
        if self.events is not None and not (len(self.events) == len(self.values) == len(self.items)):  # type: ignore[arg-type]
            raise ValueError("malformed Histories: events and values must align with items")
        if self.at is not None and (self.at.ndim != 1 or len(self.at) != len(self.indptr) - 1):
            raise ValueError("malformed Histories: `at` must hold one time per row")
        if self.times is not None and self.times.shape != self.items.shape:
            raise ValueError("malformed Histories: `times` must align with items")

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def __getitem__(self, row: int) -> np.ndarray:
        return self.items[self.indptr[row] : self.indptr[row + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    @property
    def typed(self) -> bool:
        return self.events is not None

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int] | np.ndarray]) -> Histories:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        items = (
            np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
            if len(rows) and indptr[-1] > 0
            else np.zeros(0, dtype=np.int64)
        )
        return cls(indptr, items)

    def with_events(self, events: np.ndarray, values: np.ndarray, names: Sequence[str]) -> Histories:
        """The same rows with events attached (codes into `names`, -1 untyped; NaN = no value)."""
        ev, val = np.asarray(events, np.int32), np.asarray(values, np.float32)
        return replace(self, events=ev, values=val, event_names=tuple(names))

    def with_at(self, at: np.ndarray | None) -> Histories:
        """The same rows asked at `at` (one unix second per row; None: no time given)."""
        return replace(self, at=None if at is None else np.asarray(at, dtype=np.int64))

    def with_times(self, times: np.ndarray | None) -> Histories:
        """The same rows with each event's time (unix seconds aligned with `items`; None: none)."""
        return replace(self, times=None if times is None else np.asarray(times, dtype=np.int64))

    def _gather(self, indptr: np.ndarray, src: np.ndarray, at: np.ndarray | None) -> Histories:
        """Rows `indptr` over the stored positions `src`, events and times included, asked at `at`."""
        times = self.times[src] if self.times is not None else None
        if self.events is None or self.values is None:
            return Histories(indptr, self.items[src], at=at, times=times)
        events, values = self.events[src], self.values[src]
        return Histories(indptr, self.items[src], events, values, self.event_names, at, times)

    def take(self, rows: np.ndarray) -> Histories:
        """The histories of `rows`, in that order (vectorised gather)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        at = self.at[rows] if self.at is not None else None
        if indptr[-1] == 0:
            return self._gather(indptr, np.zeros(0, dtype=np.int64), at)
        # positions: for each output slot, start of its row + offset within the row
        offsets = np.arange(indptr[-1], dtype=np.int64) - np.repeat(indptr[:-1], lengths)
        return self._gather(indptr, np.repeat(starts, lengths) + offsets, at)

    def select(self, mask: np.ndarray, indptr: np.ndarray) -> Histories:
        """The stored items where `mask` holds, regrouped into rows by `indptr` (events kept;
        `at` kept when there are as many rows as before: the same rows, fewer items)."""
        same_rows = len(indptr) == len(self.indptr)
        return self._gather(indptr, np.flatnonzero(mask), self.at if same_rows else None)

    def row_ids(self) -> np.ndarray:
        """For each stored item, the row it belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def concat_rows(self, other: Histories) -> Histories:
        """Row-wise concatenation: row r = self[r] + other[r] (events kept when either has them,
        times when both have them; asked at self's `at`)."""
        if len(self) != len(other):
            raise ValueError("row counts differ")
        lengths = self.lengths + other.lengths
        indptr = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        a_pos = np.repeat(indptr[:-1], self.lengths) + (
            np.arange(len(self.items)) - np.repeat(self.indptr[:-1], self.lengths)
        )
        b_pos = np.repeat(indptr[:-1] + self.lengths, other.lengths) + (
            np.arange(len(other.items)) - np.repeat(other.indptr[:-1], other.lengths)
        )

        def place(a: np.ndarray, b: np.ndarray, dtype: Any) -> np.ndarray:
            out = np.empty(indptr[-1], dtype=dtype)
            out[a_pos], out[b_pos] = a, b
            return out

        items = place(self.items, other.items, np.int64)
        a_t, b_t = self.times, other.times
        times = place(a_t, b_t, np.int64) if a_t is not None and b_t is not None else None
        if not (self.typed or other.typed):
            return Histories(indptr, items, at=self.at, times=times)
        names = tuple(dict.fromkeys((*self.event_names, *other.event_names)))
        a_ev, a_val = self._events_in(names)
        b_ev, b_val = other._events_in(names)
        events, values = place(a_ev, b_ev, np.int32), place(a_val, b_val, np.float32)
        return Histories(indptr, items, events, values, names, self.at, times)

    def _events_in(self, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(codes into `names`, values): untyped rows give -1 and NaN."""
        if self.events is None or self.values is None:
            return np.full(len(self.items), -1, np.int32), np.full(len(self.items), np.nan, np.float32)
        remap = np.array([names.index(n) for n in self.event_names] + [-1], dtype=np.int32)
        return remap[self.events], self.values


def empty_meta() -> pl.DataFrame:
    return pl.DataFrame(schema=META_SCHEMA)


@dataclass
class Interactions:
    """An interaction log over fixed user/item id maps, in stable per-user time order.

    `frame` columns: user, item (internal ints), timestamp (Int64, may be null), position
    (original file row, the tie-breaker), weight (Float32), event (String, may be null).
    `meta` has one row per item in internal-id order: item_id, title, genres, year, kind.
    """

    frame: pl.DataFrame
    users: IdMap
    items: IdMap
    meta: pl.DataFrame = field(default_factory=empty_meta)
    name: str = "custom"
    # the event types of the log this one was cut from, so its parts code events alike
    vocab: tuple[str, ...] | None = None

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        raw: pl.DataFrame,
        *,
        meta: pl.DataFrame | None = None,
        name: str = "custom",
        kind: str | None = None,
        items: IdMap | None = None,
    ) -> Interactions:
        """Build from a frame with *external* `user`, `item` and optional timestamp/weight/event.

        Users are numbered in order of first appearance in the file and items likewise
        (unless an item map is given, e.g. a catalog from metadata). Rows are then sorted by
        (user, timestamp, position), which is a total order, so the result never depends on
        sort stability.
        """
        c = Columns
        if raw.height == 0:
            raise ValueError("no interactions")
        df = raw.with_columns(pl.col(c.USER).cast(pl.String), pl.col(c.ITEM).cast(pl.String))
        if c.POSITION not in df.columns:
            df = df.with_row_index(c.POSITION).with_columns(pl.col(c.POSITION).cast(pl.Int64))
        for col, dtype, default in (
            (c.TIMESTAMP, pl.Int64, None),
            (c.WEIGHT, pl.Float32, 1.0),
            (c.EVENT, pl.String, None),
        ):
            if col not in df.columns:
                df = df.with_columns(pl.lit(default, dtype=dtype).alias(col))
            else:
                df = df.with_columns(pl.col(col).cast(dtype))
        user_ext = df.get_column(c.USER).unique(maintain_order=True)
        if items is None:
            item_ext = df.get_column(c.ITEM).unique(maintain_order=True)
            if meta is not None and meta.height:
                # items with metadata but no interactions are not part of the catalog
                pass
            items = IdMap(item_ext)
        users = IdMap(user_ext)
        umap = pl.DataFrame({c.USER: users.external, "_u": pl.arange(0, len(users), eager=True)})
        imap = pl.DataFrame({c.ITEM: items.external, "_i": pl.arange(0, len(items), eager=True)})
        df = df.join(umap, on=c.USER, how="left").join(imap, on=c.ITEM, how="left")
        missing = df.filter(pl.col("_i").is_null())
        if missing.height:
            raise UnknownIdError("item", missing.get_column(c.ITEM).unique().to_list())
        frame = df.select(
            pl.col("_u").cast(pl.Int32).alias(c.USER),
            pl.col("_i").cast(pl.Int32).alias(c.ITEM),
            c.TIMESTAMP,
            c.POSITION,
            c.WEIGHT,
            c.EVENT,
        ).sort([c.USER, c.TIMESTAMP, c.POSITION], nulls_last=True)
        return cls(frame, users, items, align_meta(items, meta, kind), name)

    # ---- basic facts ------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def __len__(self) -> int:
        return self.frame.height

    @property
    def user_idx(self) -> np.ndarray:
        return self.frame.get_column(Columns.USER).to_numpy().astype(np.int64)

    @property
    def item_idx(self) -> np.ndarray:
        return self.frame.get_column(Columns.ITEM).to_numpy().astype(np.int64)

    def replace(self, frame: pl.DataFrame) -> Interactions:
        """Same id maps and metadata, other rows (already in canonical order)."""
        return Interactions(frame, self.users, self.items, self.meta, self.name, self.event_names)

    @property
    def event_names(self) -> tuple[str, ...]:
        """The log's event types, sorted (those of the log it was cut from, for a split's part)."""
        if self.vocab is None:
            names = self.frame.get_column(Columns.EVENT).drop_nulls().unique().sort().to_list()
            self.vocab = tuple(str(n) for n in names)
        return self.vocab

    def sequences(self) -> Histories:
        """Every user's items in stable time order, one row per internal user id; with the
        events (codes into `event_names`) and their values when the log is typed."""
        counts = np.bincount(self.user_idx, minlength=self.n_users)
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        names = self.event_names
        if not names:
            return Histories(indptr, self.item_idx)
        codes = (
            self.frame.get_column(Columns.EVENT)
            .replace_strict(list(names), list(range(len(names))), default=-1, return_dtype=pl.Int32)
            .fill_null(-1)
            .to_numpy()
        )
        values = self.frame.get_column(Columns.WEIGHT).to_numpy().astype(np.float32)
        return Histories(indptr, self.item_idx, codes, values, names)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.item_idx, minlength=self.n_items)

    def stats(self) -> dict[str, Any]:
        lengths = np.bincount(self.user_idx, minlength=self.n_users)
        active_users = int((lengths > 0).sum())
        active_items = int((self.item_counts() > 0).sum())
        probs = [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]
        q: Any = np.quantile(lengths[lengths > 0], probs) if len(self) else [0.0] * len(probs)
        pairs = self.frame.select(Columns.USER, Columns.ITEM).n_unique()
        return {
            "dataset": self.name,
            "users": active_users,
            "items": active_items,
            "interactions": len(self),
            "unique_pairs": int(pairs),
            "density": len(self) / max(1, active_users * active_items),
            "has_timestamps": bool(self.frame.get_column(Columns.TIMESTAMP).null_count() < len(self)),
            "sequence_length": dict(
                zip(["min", "p25", "p50", "p75", "p90", "p99", "max"], [float(x) for x in q], strict=True)
            ),
            "events": (
                {
                    str(k): int(v)
                    for k, v in self.frame.get_column(Columns.EVENT).drop_nulls().value_counts().iter_rows()
                }
                if self.frame.get_column(Columns.EVENT).null_count() < len(self)
                else {}
            ),
        }

    def titles(self, idx: Sequence[int] | np.ndarray) -> list[str]:
        titles = self.meta.get_column(Columns.TITLE)
        return [
            str(titles[int(i)]) if titles[int(i)] is not None else self.items.external[int(i)] for i in idx
        ]


def align_meta(items: IdMap, meta: pl.DataFrame | None, kind: str | None) -> pl.DataFrame:
    """Item metadata with exactly one row per internal item, in internal-id order."""
    c = Columns
    base = pl.DataFrame({c.ITEM_ID: items.external})
    if meta is None or meta.height == 0:
        meta = empty_meta()
    meta = meta.with_columns(pl.col(c.ITEM_ID).cast(pl.String)).unique(c.ITEM_ID, keep="first")
    for col, dtype in META_SCHEMA.items():
        if col not in meta.columns:
            meta = meta.with_columns(pl.lit(None, dtype=dtype).alias(col))
    out = base.join(meta.select(list(META_SCHEMA)), on=c.ITEM_ID, how="left", maintain_order="left")
    if kind is not None:
        out = out.with_columns(pl.col(c.KIND).fill_null(kind))
    return out.with_columns(
        pl.col(c.TITLE).fill_null(pl.col(c.ITEM_ID)),
        pl.col(c.GENRES).fill_null(pl.lit([], dtype=pl.List(pl.String))),
    ).select(list(META_SCHEMA))
