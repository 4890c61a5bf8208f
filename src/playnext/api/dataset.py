"""`pn.Dataset`: a pandas or polars frame of events, with the caller's column names and id types.

The frame is read once into `Interactions` (dense internal ids, stable per-user time order); the
Dataset remembers what the caller called things — the user and item columns, their dtypes, and
whether the frame was pandas or polars — so every table the API returns speaks the caller's
language: `uid, rank, iid, score` with ints where the ids were ints.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from playnext.data import checks as data_checks
from playnext.data import split as splits
from playnext.data.checks import Finding
from playnext.data.interactions import Columns, Interactions
from playnext.data.tables import iso_seconds
from playnext.errors import ConfigError

Frame = Any  # a pandas.DataFrame or a polars.DataFrame


@dataclass(frozen=True)
class Names:
    """The caller's column names and id dtypes, carried by every Dataset cut from one frame."""

    user: str = "user"
    item: str = "item"
    user_dtype: Any = pl.String
    item_dtype: Any = pl.String
    pandas: bool = False

    def ids(self, values: pl.Series, *, user: bool) -> pl.Series:
        """External ids (stored as strings) back in the caller's dtype."""
        dtype = self.user_dtype if user else self.item_dtype
        return values.cast(dtype, strict=False).rename(self.user if user else self.item)

    def table(self, df: pl.DataFrame) -> Frame:
        """`df` as the kind of frame the caller gave (pandas or polars)."""
        return df.to_pandas() if self.pandas else df

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "item": self.item,
            "user_dtype": str(self.user_dtype),
            "item_dtype": str(self.item_dtype),
            "pandas": self.pandas,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Names:
        def dtype(name: str) -> Any:
            return getattr(pl, name.split("(")[0], pl.String) if name else pl.String

        return cls(d["user"], d["item"], dtype(d["user_dtype"]), dtype(d["item_dtype"]), bool(d["pandas"]))


@dataclass(frozen=True)
class Dataset:
    """An interaction log with the caller's names: what models fit on and recommend for."""

    interactions: Interactions
    names: Names = field(default_factory=Names)

    @classmethod
    def from_frame(
        cls,
        df: Frame,
        *,
        user: str = "user",
        item: str = "item",
        time: str | None = "timestamp",
        event: str | None = None,
        value: str | None = None,
        items: Frame | None = None,
        name: str = "custom",
    ) -> Dataset:
        """Read a frame with one row an event. `time` may hold unix seconds, dates or datetimes
        (None or a missing default column: file order); `event` an event type per row and
        `value` its value (a rating, a play share); `items` a second frame of item metadata with
        the item column plus any of title, genres (a list or "a|b"), year, kind."""
        frame, pandas = _polars(df, "df")
        wanted = {"user": user, "item": item, "event": event, "value": value}
        if time is not None and (time != "timestamp" or "timestamp" in frame.columns):
            wanted["time"] = time
        for what, col in wanted.items():
            if col is not None and col not in frame.columns:
                raise ConfigError(
                    f"{what} column {col!r} is not in the frame; its columns: {', '.join(frame.columns)}"
                )
        if frame.height == 0:
            raise ConfigError("the frame has no rows")
        for col in (user, item):
            if frame.get_column(col).null_count():
                raise ConfigError(f"column {col!r} has {frame.get_column(col).null_count()} missing id(s)")
        raw = pl.DataFrame(
            {
                Columns.USER: frame.get_column(user).cast(pl.String),
                Columns.ITEM: frame.get_column(item).cast(pl.String),
            }
        )
        if time is not None and "time" in wanted:
            raw = raw.with_columns(_seconds(frame.get_column(time)).alias(Columns.TIMESTAMP))
        if event is not None:
            raw = raw.with_columns(frame.get_column(event).cast(pl.String).alias(Columns.EVENT))
        if value is not None:
            raw = raw.with_columns(_floats(frame.get_column(value), value).alias(Columns.WEIGHT))
        meta = _meta(items, item) if items is not None else None
        names = Names(user, item, frame.schema[user], frame.schema[item], pandas)
        return cls(Interactions.from_frame(raw, meta=meta, name=name), names)

    # ---- facts ------------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return self.interactions.n_users

    @property
    def n_items(self) -> int:
        return self.interactions.n_items

    def __len__(self) -> int:
        return len(self.interactions)

    def __repr__(self) -> str:
        n = f"{len(self):,} events, {self.n_users:,} users, {self.n_items:,} items"
        return f"Dataset({self.interactions.name!r}: {n})"

    def stats(self) -> dict[str, Any]:
        """Users, items, events, density and history lengths (what `playnext data stats` prints)."""
        return self.interactions.stats()

    def checks(self, repeats: bool = False) -> list[Finding]:
        """What `playnext data stats` warns about: duplicate rows, test targets already seen (under
        the repeat-aware protocol with `repeats`), users too short to evaluate, a catalog too small
        to rank, the time range; each finding says what handles it."""
        return data_checks.check(self.interactions, repeats=repeats)

    def user_ids(self) -> Frame:
        """Every user's id, in the caller's dtype."""
        return self.names.ids(self.interactions.users.external, user=True).to_list()

    def with_interactions(self, interactions: Interactions) -> Dataset:
        return Dataset(interactions, self.names)

    # ---- cleaning ---------------------------------------------------------------------------------
    def deduplicate(self) -> Dataset:
        """Keep the first of each repeated (user, item) pair: a log where re-consumption is noise."""
        return self.with_interactions(splits.deduplicate(self.interactions))


@dataclass(frozen=True)
class DataSplit:
    """Train events plus validation and test questions, in the caller's names."""

    data: Dataset
    split: splits.Split

    @property
    def train(self) -> Dataset:
        return self.data.with_interactions(self.split.train)

    @property
    def protocol(self) -> dict[str, object]:
        return self.split.protocol

    def __repr__(self) -> str:
        return (
            f"DataSplit({self.split.protocol.get('split')}: {len(self.split.train):,} train events, "
            f"{len(self.split.valid):,} validation and {len(self.split.test):,} test users)"
        )


def leave_one_out(data: Dataset, min_length: int = 3) -> DataSplit:
    """Each user's last event is test, the one before validation, the rest train (users with
    fewer than `min_length` events stay in train, unevaluated)."""
    return DataSplit(data, splits.leave_one_out(data.interactions, min_length))


def temporal_split(
    data: Dataset, at: str | dt.date | dt.datetime | float = 0.9, valid: float = 0.1
) -> DataSplit:
    """A global time cut. `at` is a date ("2003-01-01") or the fraction of events before the
    cut (0.9); events after it are test, the `valid` fraction of all events just before it is
    validation. Targets are items a user had not seen before the cut."""
    if isinstance(at, float | int) and not isinstance(at, bool):
        if not 0 < at < 1:
            raise ConfigError(f"at: a fraction must be in (0, 1), got {at}")
        test_fraction = 1 - float(at)
    else:
        cut = _seconds(pl.Series([at]))[0]
        ts = data.interactions.frame.get_column(Columns.TIMESTAMP)
        if ts.null_count() == len(ts):
            raise ConfigError("at: this dataset has no timestamps; give a fraction of events instead")
        test_fraction = float((ts > cut).mean() or 0.0)
        if not 0 < test_fraction < 1 - valid:
            raise ConfigError(f"at: {at} leaves {test_fraction:.1%} of the events after the cut")
    return DataSplit(data, splits.temporal_split(data.interactions, test_fraction, valid))


def k_core(data: Dataset, k: int = 5, k_item: int | None = None) -> Dataset:
    """Drop users with fewer than `k` events and items with fewer than `k_item` (default `k`),
    repeatedly, until both hold."""
    try:
        return data.with_interactions(splits.k_core(data.interactions, k, k if k_item is None else k_item))
    except ValueError as e:
        raise ConfigError(f"k_core: {e}") from None


def deduplicate(data: Dataset) -> Dataset:
    """`Dataset.deduplicate`: the first of each repeated (user, item) pair."""
    return data.deduplicate()


# ---- reading frames ------------------------------------------------------------------------------
def _polars(df: Frame, what: str) -> tuple[pl.DataFrame, bool]:
    """(a polars frame, whether the caller's was pandas); a mixed-type id column is an error."""
    if isinstance(df, pl.DataFrame):
        return df, False
    if isinstance(df, pl.LazyFrame):
        return df.collect(), False
    import pandas as pd

    if isinstance(df, pd.DataFrame):
        for col in df.columns:
            kind = pd.api.types.infer_dtype(df[col], skipna=True)
            if kind.startswith("mixed"):
                raise ConfigError(f"column {col!r} mixes value types ({kind}); give one type per column")
        try:
            return pl.from_pandas(df.reset_index(drop=True)), True
        except Exception as e:  # pyarrow conversion errors name the column in their message
            raise ConfigError(f"{what}: cannot read the pandas frame ({e})") from None
    raise ConfigError(f"{what}: expected a pandas or polars DataFrame, got {type(df).__name__}")


def _seconds(col: pl.Series) -> pl.Series:
    """Unix seconds (Int64) from numbers, dates, datetimes or ISO strings."""
    dtype = col.dtype
    if dtype == pl.Datetime or isinstance(dtype, pl.Datetime):
        return col.dt.epoch("s")
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.epoch("s")
    if dtype.is_numeric():
        seconds = col.cast(pl.Int64)
        unit, per_second = data_checks.time_unit(seconds)
        if per_second > 1:  # milli-, micro- or nanoseconds by their size, as `playnext train` reads them
            warnings.warn(f"time column {col.name!r} holds {unit}: read as seconds", stacklevel=3)
            return seconds // per_second
        return seconds
    if dtype == pl.Object and len(col) and isinstance(col[0], dt.date | dt.datetime):
        return _seconds(pl.Series(col.name, col.to_list()))
    parsed = iso_seconds(col.cast(pl.String))  # the readers' own ISO parsing
    bad = parsed.is_null() & col.is_not_null()
    if bad.any():
        row = int(bad.arg_true()[0])
        raise ConfigError(f"time column {col.name!r}, row {row}: cannot read {col[row]!r} as a date or time")
    return parsed


def _floats(col: pl.Series, name: str) -> pl.Series:
    try:
        return col.cast(pl.Float32)
    except pl.exceptions.PolarsError:
        raise ConfigError(f"value column {name!r} holds values that are not numbers") from None


def _meta(items: Frame, item: str) -> pl.DataFrame:
    """Item metadata in playnext's columns: the item id plus title, genres, year, kind."""
    frame, _ = _polars(items, "items")
    key = item if item in frame.columns else Columns.ITEM_ID
    if key not in frame.columns:
        raise ConfigError(
            f"items: no item column {item!r} (or {Columns.ITEM_ID!r}); "
            f"its columns: {', '.join(frame.columns)}"
        )
    out = frame.select(pl.col(key).cast(pl.String).alias(Columns.ITEM_ID))
    if Columns.TITLE in frame.columns:
        out = out.with_columns(frame.get_column(Columns.TITLE).cast(pl.String))
    if Columns.GENRES in frame.columns:
        g = frame.get_column(Columns.GENRES)
        if g.dtype == pl.String:
            g = g.str.split("|")
        out = out.with_columns(g.cast(pl.List(pl.String)).alias(Columns.GENRES))
    if Columns.YEAR in frame.columns:
        out = out.with_columns(frame.get_column(Columns.YEAR).cast(pl.Int32, strict=False))
    if Columns.KIND in frame.columns:
        out = out.with_columns(frame.get_column(Columns.KIND).cast(pl.String))
    return out


def as_array(ids: Any) -> np.ndarray:
    """A list, Series or array of ids as a 1-d object array."""
    if isinstance(ids, pl.Series):
        return np.asarray(ids.to_list(), dtype=object)
    return np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=object).reshape(-1)
