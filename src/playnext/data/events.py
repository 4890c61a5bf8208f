"""Event types: what a row of the log says about its item, the range of its value, and its sign.

Entertainment logs are typed: a track is skipped or played through, a film rated 2 or 5 stars,
a game bought and played for 300 hours. One registry says, per type, which values are possible
(readers refuse the rest with file, line and field), which are *positive* (something the user
wants more of: a training target) and how a value is bucketed for a model's action embedding.
A type the registry does not know (a CSV's own "view", "cart") is accepted, unbounded and
positive: only its name carries meaning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from playnext.data.tables import LINE, snip
from playnext.errors import ConfigError, DataError, UnknownEventTypeError

INF = math.inf


@dataclass(frozen=True)
class EventType:
    """One event type: value range (inclusive), from which value it is positive, what it means."""

    name: str
    low: float
    high: float  # INF: unbounded (counts, hours): buckets are log2-spaced
    positive_from: float | None  # positive when value >= this; None: never a target
    meaning: str

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


EVENT_TYPES: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType("play", 0.0, INF, 0.0, "played; value = play count (music) or hours played (games)"),
        EventType("watch", 0.0, 1.0, 0.5, "watched or listened; value = the fraction consumed"),
        EventType("rating", 0.5, 5.0, 3.0, "an explicit rating in stars; below 3 is a low rating"),
        EventType("purchase", 0.0, 1.0, 0.0, "bought (Steam); value 1, or 0 hours when never played"),
        EventType("like", 0.0, 1.0, 0.0, "liked"),
        EventType("dislike", 0.0, 1.0, None, "disliked"),
        EventType("skip", 0.0, 1.0, None, "skipped; value = the fraction played before the skip"),
        EventType("tag", 0.0, INF, 0.0, "tagged (Last.fm tag assignments)"),
    )
}
"""The known event types; `rating` covers MovieLens' 0.5–5 stars."""


SKIP = "skip"  # the event a client sends for "not this one" (the page's Skip button)


def reads_event(name: str | None, types: Sequence[str]) -> bool:
    """Whether a model that learned the event `types` reads an event `name` at all. A skip it has
    no type for is only an implicit negative: such a model takes what it reads as a pick (an
    untyped model every row, a typed one an event of no known type), so serving leaves the skip
    out of the history it scores and retrain out of the data it trains on; one rule for both."""
    return name != SKIP or SKIP in types


def event_type(name: str) -> EventType:
    """The registered type, or an unbounded always-positive one for a name the registry lacks."""
    return EVENT_TYPES.get(name) or EventType(name, -INF, INF, -INF, "a dataset's own event type")


def check_event(name: str | None, value: float | None, known: Sequence[str], where: str = "") -> None:
    """Refuse an event that a model trained with the `known` types cannot read: another type (the
    message lists the known ones) or a value outside its type's range. An untyped event passes.

    One rule for every door events come in by (API, CLI, retrain); `where` locates the event."""
    if name is None:
        return
    at = f"{where}: " if where else ""
    if name not in known:
        raise UnknownEventTypeError(
            f"{at}unknown event type {name!r}: this model was trained with {', '.join(known)}", tuple(known)
        )
    t = event_type(name)
    if value is not None and not t.low <= value <= t.high:
        rng = f"[{t.low:g}, {t.high:g}]"
        raise ConfigError(f"{at}a {name!r} value must be in {rng} ({t.meaning}), got {value:g}")


def describe(names: Sequence[str]) -> list[dict[str, object]]:
    """The types `names` as JSON-ready records for clients (an unbounded end is None): what a
    server's `/health` lists, so a client sends only types and values the model takes."""
    out: list[dict[str, object]] = []
    for n in names:
        t = event_type(n)
        p = t.positive_from
        out.append(
            {
                "name": t.name,
                "low": t.low if math.isfinite(t.low) else None,
                "high": t.high if math.isfinite(t.high) else None,
                "positive": p is not None,  # whether the type can be a training target at all
                "positive_from": p if p is not None and math.isfinite(p) else None,  # None: any value
                "meaning": t.meaning,
            }
        )
    return out


def check_values(
    df: pl.DataFrame,
    value_field: str,
    path: Path,
    *,
    event: str | None = None,
    event_field: str | None = None,
) -> None:
    """Refuse values outside their event type's range, naming file, line and field.

    `df` has the `_line` column of `tables.typed`; the type is the constant `event` (a ratings
    file) or the column `event_field`. Null values pass (they take the type's default)."""
    if df.height == 0:
        return
    names = [event] if event is not None else df.get_column(event_field or "").drop_nulls().unique().to_list()
    for name in names:
        t = event_type(str(name))
        if not (math.isfinite(t.low) or math.isfinite(t.high)):
            continue
        v = pl.col(value_field)
        out = (v < t.low) | (v > t.high)
        if event is None:
            out = out & (pl.col(event_field or "") == name)
        bad = df.select(out.fill_null(False).alias("_out")).to_series().arg_true()
        if len(bad):
            r = df.row(int(bad[0]), named=True)
            hi = "" if math.isinf(t.high) else f" and {t.high:g}"
            rng = f"between {t.low:g}{hi}" if hi else f"at least {t.low:g}"
            raise DataError(
                f"a {name!r} value must be {rng} ({t.meaning}), got {snip(str(r[value_field]))}",
                path=path,
                line=r[LINE],
                field=value_field,
            )


def positive_mask(codes: np.ndarray, values: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(N,) bool: which events are positive; `codes` index `names`, -1 = untyped (positive)."""
    thr = np.array(
        [INF if (p := event_type(n).positive_from) is None else p for n in names] + [-INF],
        dtype=np.float64,
    )  # the last entry serves code -1
    v = np.nan_to_num(values.astype(np.float64), nan=INF)  # a missing value: positive unless never
    return v >= thr[codes]


def value_buckets(codes: np.ndarray, values: np.ndarray, names: Sequence[str], n_buckets: int) -> np.ndarray:
    """(N,) int bucket of each value within its type: equal slices of a bounded range, log2
    steps (0, 1, 2–3, 4–7, …) of an unbounded one; a missing value is bucket 0."""
    types = [event_type(n) for n in names]
    low = np.array([t.low if math.isfinite(t.low) else 0.0 for t in types] + [0.0])
    span = np.array([t.high - t.low if t.bounded else 0.0 for t in types] + [0.0])
    v = np.nan_to_num(values.astype(np.float64), nan=0.0) - low[codes]
    s = span[codes]
    linear = np.floor(v / np.where(s > 0, s, 1.0) * n_buckets)
    log = np.floor(np.log2(1.0 + np.maximum(v, 0.0)))
    return np.clip(np.where(s > 0, linear, log), 0, n_buckets - 1).astype(np.int64)
