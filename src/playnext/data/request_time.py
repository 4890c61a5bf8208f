"""When a question is asked: one reading of a request's `at` for every entry point.

A model trained with the request's time (HSTU with `time_reference="request"`,
`Recommender.uses_request_time`) measures each history event's gap to it; every other model
ignores it. The service's `at` field, `playnext recommend --at`, batch output and
`model.recommend(at=...)` all read it here, so the same value means the same second
everywhere: unix seconds (an int or a float, floored) or an ISO-8601 string read as the data
readers read ISO times (`tables.iso_seconds`: UTC when no zone is given). No value means now —
a production request happens now, so that is the time it is asked at.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

import numpy as np
import polars as pl

from playnext.data.tables import iso_seconds
from playnext.errors import ConfigError

MAX_SECONDS = 10**11  # as a session event's timestamp: beyond year 5000 is a unit mistake (ms)
At: TypeAlias = int | float | str | datetime | np.integer[Any] | np.floating[Any]
Times: TypeAlias = At | Sequence[At] | np.ndarray | None


def now() -> int:
    """The current unix second: the time a request given no `at` is asked at."""
    return int(time.time())


def parse_at(value: At | None, where: str = "at") -> int:
    """One request time as unix seconds (None: now); anything else is a ConfigError naming
    `where` and the value."""
    if value is None:
        return now()
    if isinstance(value, datetime):
        if value.tzinfo is None:  # as the readers read a zoneless ISO time: UTC
            return math.floor(value.replace(tzinfo=UTC).timestamp())
        return math.floor(value.timestamp())
    if isinstance(value, str):
        text = value.strip()
        try:
            return _seconds(float(text), where, value)
        except ValueError:
            pass
        parsed = iso_seconds(pl.Series([text], dtype=pl.String))[0] if text else None
        if parsed is None:
            raise ConfigError(
                f"{where}: {value!r} is neither unix seconds nor an ISO-8601 time (e.g. 2024-05-01T12:00:00Z)"
            )
        return _seconds(float(parsed), where, value)
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"{where}: expected unix seconds or an ISO-8601 string, got {type(value).__name__}")
    return _seconds(float(value), where, value)


def _seconds(x: float, where: str, shown: object) -> int:
    if not math.isfinite(x) or not 0 <= x <= MAX_SECONDS:
        raise ConfigError(f"{where}: {shown!r} is not a unix time in seconds (0 to {MAX_SECONDS:.0e})")
    return math.floor(x)


def request_times(at: Times, n: int, where: str = "at") -> np.ndarray:
    """(n,) int64 request times: one value (None: now) for every row, or one per row."""
    if at is None or isinstance(at, str | datetime | int | float | np.integer | np.floating):
        return np.full(n, parse_at(at, where), dtype=np.int64)
    values = list(at)
    if len(values) != n:
        raise ConfigError(f"{where}: {len(values)} time(s) for {n} row(s); give one time, or one per row")
    return np.array([parse_at(v, f"{where}[{i}]") for i, v in enumerate(values)], dtype=np.int64)


__all__ = ["MAX_SECONDS", "At", "Times", "now", "parse_at", "request_times"]
