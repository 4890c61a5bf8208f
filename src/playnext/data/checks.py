"""What to know about a log before training on it: typed findings, each naming what handles it.

`playnext data stats` and `playnext train` read a file, then `prepare` it: timestamps in
milliseconds or nanoseconds become seconds, `--dedupe` and `--k-core N` clean it, and the checks
below look for the traps that otherwise pass silently: rows repeated exactly (a log with every
row twice trains and scores 0), test targets the user has already seen (never hit while seen
items are masked), users too short to evaluate, a catalog too small to rank, and the time range.
The CLI prints each finding as one line; `--json` records them under `data_checks`. An `error`
finding is a refusal: nothing is trained or saved.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import polars as pl

from playnext.data.interactions import Columns, Interactions
from playnext.data.split import MIN_LENGTH, deduplicate, k_core
from playnext.errors import DataError

C = Columns
Severity = Literal["info", "warning", "error"]

SEEN_TARGETS_WARN = 0.05
"""The share of test targets already in the history worth a line (below it, a few re-listens)."""
_UNITS = ((10**17, "nanoseconds", 10**9), (10**14, "microseconds", 10**6), (10**11, "milliseconds", 10**3))
"""(smallest typical magnitude, unit, per second): unix seconds stay below 1e11 until the year 5138."""


@dataclass(frozen=True)
class Finding:
    """One thing found in a log: which check, how serious, one line saying it and what handles it."""

    check: str
    severity: Severity
    message: str
    flag: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Cleaning:
    """What to do to a log before the checks: `--dedupe`, `--k-core N`."""

    dedupe: bool = False
    k_core: int | None = None


def prepare(
    data: Interactions, cleaning: Cleaning = Cleaning(), *, repeats: bool = False
) -> tuple[Interactions, list[Finding]]:
    """Timestamps to seconds, then the cleaning asked for, then every check on what is left."""
    data, unit = to_seconds(data)
    findings = [unit] if unit is not None else []
    if cleaning.dedupe:
        before = len(data)
        data = deduplicate(data)
        dropped = before - len(data)
        findings.append(
            Finding(
                "dedupe",
                "info",
                f"--dedupe: kept the first of each (user, item) pair, dropped {dropped:,} of {before:,} rows",
                "--dedupe",
                {"rows_before": before, "rows_dropped": dropped},
            )
        )
    if cleaning.k_core is not None:
        data, note = _k_core(data, cleaning.k_core)
        findings.append(note)
    return data, findings + check(data, repeats=repeats)


def check(data: Interactions, *, repeats: bool = False, min_length: int = MIN_LENGTH) -> list[Finding]:
    """Every check on `data` (already in seconds and cleaned), in the order they are printed."""
    found = (
        catalog(data),
        duplicate_rows(data),
        seen_targets(data, repeats=repeats, min_length=min_length),
        short_users(data, min_length),
        time_range(data),
    )
    return [f for f in found if f is not None]


def refusal(findings: list[Finding]) -> DataError | None:
    """The error to stop on, if any finding is one."""
    errors = [f.message for f in findings if f.severity == "error"]
    return DataError("; ".join(errors)) if errors else None


# ---- conversions ---------------------------------------------------------------------------------
def time_unit(ts: pl.Series) -> tuple[str, int]:
    """The unit of unix timestamps, from the magnitude of their median: (name, per second)."""
    values = ts.drop_nulls()
    median = values.abs().median() if len(values) else None
    if isinstance(median, int | float):
        for smallest, unit, per_second in _UNITS:
            if median >= smallest:
                return unit, per_second
    return "seconds", 1


def to_seconds(data: Interactions) -> tuple[Interactions, Finding | None]:
    """Timestamps in milliseconds, microseconds or nanoseconds as seconds, said once.

    The rows keep their order, and the file positions are renumbered in that order, so events
    within one second keep the finer order the original unit gave them.
    """
    unit, per_second = time_unit(data.frame.get_column(C.TIMESTAMP))
    if per_second == 1:
        return data, None
    frame = data.frame.with_columns(
        pl.col(C.TIMESTAMP).floordiv(per_second),
        pl.int_range(pl.len(), dtype=pl.Int64).alias(C.POSITION),
    )
    note = Finding(
        "time_unit",
        "info",
        f"timestamps are in {unit} (by their magnitude): converted to seconds",
        None,
        {"unit": unit, "per_second": per_second},
    )
    return data.replace(frame), note


def _k_core(data: Interactions, k: int) -> tuple[Interactions, Finding]:
    try:
        kept = k_core(data, k, k)
    except ValueError:
        raise DataError(f"--k-core {k} leaves no events: every user or item has fewer than {k}") from None
    facts = {
        "k": k,
        "rows": [len(data), len(kept)],
        "users": [data.n_users, kept.n_users],
        "items": [data.n_items, kept.n_items],
    }
    note = Finding(
        "k_core",
        "info",
        f"--k-core {k}: kept {len(kept):,} of {len(data):,} events, {kept.n_users:,} of "
        f"{data.n_users:,} users, {kept.n_items:,} of {data.n_items:,} items",
        "--k-core",
        facts,
    )
    return kept, note


# ---- checks ----------------------------------------------------------------------------------------
def catalog(data: Interactions) -> Finding | None:
    """Fewer than 2 items: there is nothing to rank."""
    n = int((data.item_counts() > 0).sum())
    if n >= 2:
        return None
    return Finding(
        "catalog",
        "error",
        f"the catalog has {n} item{'s' if n != 1 else ''}: a ranking needs at least 2",
        None,
        {"items": n},
    )


def duplicate_rows(data: Interactions) -> Finding | None:
    """Rows that repeat an earlier row exactly: same user, item, time, event and value."""
    keys = [C.USER, C.ITEM, C.TIMESTAMP, C.EVENT, C.WEIGHT]
    n = len(data) - data.frame.select(keys).n_unique()
    if n == 0:
        return None
    share = n / len(data)
    return Finding(
        "duplicates",
        "warning",
        f"{n:,} rows ({share:.0%}) repeat an earlier row exactly (same user, item and time): "
        "--dedupe keeps the first of each (user, item) pair",
        "--dedupe",
        {"rows": n, "share": share},
    )


def seen_targets(
    data: Interactions, *, repeats: bool = False, min_length: int = MIN_LENGTH
) -> Finding | None:
    """The share of leave-one-out test targets already in the user's history.

    Masked as seen, such a target can never be hit: with every row doubled, all of them are.
    """
    f = data.frame.select(
        C.USER,
        (pl.int_range(pl.len()).over(C.USER, C.ITEM) > 0).alias("seen"),
        (pl.int_range(pl.len()).over(C.USER) == pl.len().over(C.USER) - 1).alias("last"),
        (pl.len().over(C.USER) >= min_length).alias("evaluated"),
    ).filter(pl.col("last") & pl.col("evaluated"))
    if f.height == 0:
        return None
    n = int(f.get_column("seen").sum())
    share = n / f.height
    facts = {"targets": f.height, "seen": n, "share": share}
    if repeats and n:
        msg = f"{share:.0%} of test targets ({n:,} of {f.height:,}) are repeats: candidates under --repeats"
        return Finding("seen_targets", "info", msg, "--repeats", facts)
    if share < SEEN_TARGETS_WARN:
        return None
    return Finding(
        "seen_targets",
        "warning",
        f"{share:.0%} of test targets ({n:,} of {f.height:,}) are items already in the user's history, "
        "never hit while seen items are masked: --repeats keeps them as candidates, --dedupe keeps "
        "each (user, item) pair once",
        "--repeats",
        facts,
    )


def short_users(data: Interactions, min_length: int = MIN_LENGTH) -> Finding | None:
    """Users with too few events for leave-one-out: they train but are never evaluated."""
    lengths = data.frame.group_by(C.USER).len().get_column("len")
    n = int((lengths < min_length).sum())
    if n == 0:
        return None
    facts = {"users": n, "of": len(lengths), "min_events": min_length}
    if n == len(lengths):
        return Finding(
            "short_users",
            "error",
            f"no user has {min_length} or more events: leave-one-out has nobody to evaluate",
            None,
            facts,
        )
    return Finding(
        "short_users",
        "info",
        f"{n:,} of {len(lengths):,} users have fewer than {min_length} events: the split trains on them "
        f"but evaluates none (--k-core {min_length} drops them)",
        "--k-core",
        facts,
    )


def time_range(data: Interactions) -> Finding:
    """When the events happened (UTC), or that there are no timestamps."""
    ts = data.frame.get_column(C.TIMESTAMP).drop_nulls()
    if len(ts) == 0:
        return Finding("time_range", "info", "no timestamps: each user's events are in file order", None, {})
    lo, hi = int(ts.min()), int(ts.max())  # type: ignore[arg-type]
    days = (hi - lo) / 86_400
    span = f"{days:,.0f} days" if days >= 2 else f"{(hi - lo) / 3600:,.1f} hours"
    missing = len(data) - len(ts)
    tail = f"; {missing:,} events without a time" if missing else ""
    return Finding(
        "time_range",
        "info",
        f"events from {_date(lo)} to {_date(hi)} (UTC, {span}){tail}",
        None,
        {"first": lo, "last": hi, "missing": missing},
    )


def _date(seconds: int) -> str:
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):
        return str(seconds)
