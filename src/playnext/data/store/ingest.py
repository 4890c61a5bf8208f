"""Streaming a log file into a store's staging folder, without holding it in memory.

Nothing is held per interaction in Python. Polars' streaming engine parses and checks the file
(the same vectorised checks, and the same DataError messages, as the readers), numbers users
and items, and writes coded rows to a scratch Parquet file; then users are cut into ranges of
about `chunk_rows` events, and each range is sorted in memory and appended to the `.npy` files.
Peak memory is therefore bounded by `chunk_rows` and by the id maps, not by the log.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from playnext.data.interactions import Columns, IdMap, align_meta
from playnext.data.store.files import Entry, NpyWriter, save_array, save_table, write_manifest
from playnext.data.store.format import NO_TIME
from playnext.data.store.sources import Source
from playnext.data.tables import (
    LINE,
    OK,
    POLARS_ERRORS,
    Table,
    clean,
    convert,
    diagnose,
    explain,
    iso_seconds,
)
from playnext.errors import DataError

C = Columns
Progress = Callable[[str], None]
_RAW_ISO = "_iso"  # a timestamp that is not a number: parsed as an ISO date-time after the scan
_BAD = "_bad"


def _typed_rows(src: Source, t: Table) -> tuple[pl.LazyFrame, list[str]]:
    """Typed rows (user, item, timestamp, weight, position) plus `_bad` and `_iso`, still lazy.

    Two selects, so each field is cleaned and cast once; the checks then only combine flags.
    """
    optional = src.optional
    cast: list[pl.Expr] = []
    for col, kind in src.kinds.items():
        raw = clean(pl.col(col), kind)
        cast += [convert(raw, kind).alias(f"_v:{col}"), raw.is_not_null().alias(f"_h:{col}")]
        if kind == "time":  # the text, for values that may be ISO date-times
            cast.append(pl.col(col).alias(f"_s:{col}"))
    bad = ~pl.col(OK)
    iso: pl.Expr = pl.lit(None, dtype=pl.String)
    for col, kind in src.kinds.items():
        value, has = pl.col(f"_v:{col}"), pl.col(f"_h:{col}")
        if kind == "time":  # not a number: maybe an ISO date-time, checked after the scan
            iso = pl.when(has & value.is_null()).then(pl.col(f"_s:{col}"))
        else:
            bad = bad | (has & value.is_null())
        if col not in optional:
            bad = bad | ~has
    cols = src.cols

    def typed(ours: str) -> pl.Expr:
        return pl.col(f"_v:{cols[ours]}")

    ts = typed(C.TIMESTAMP) if C.TIMESTAMP in cols else pl.lit(None, dtype=pl.Int64)
    weight = typed(C.WEIGHT).fill_null(1.0) if C.WEIGHT in cols else pl.lit(1.0)
    lf = (
        t.frame.select(LINE, OK, *cast)
        .select(
            LINE,
            typed(C.USER).cast(pl.String).alias(C.USER),
            typed(C.ITEM).cast(pl.String).alias(C.ITEM),
            ts.cast(pl.Int64).alias(C.TIMESTAMP),
            weight.cast(pl.Float32).alias(C.WEIGHT),
            iso.alias(_RAW_ISO),
            bad.alias(_BAD),
        )
        .with_row_index(C.POSITION)
    )
    return lf.with_columns(pl.col(C.POSITION).cast(pl.Int64)), optional


def _sink(t: Table, lf: pl.LazyFrame, path: Path) -> None:
    try:
        lf.sink_parquet(path, engine="streaming", compression="lz4")
    except POLARS_ERRORS as e:
        raise diagnose(t, e) from None


def ingest(src: Source, tmp: Path, chunk_rows: int, say: Progress) -> None:
    """Parse, check, number, sort and write `src` into `tmp`, ending with the manifest."""
    work = tmp / "_work"
    work.mkdir(exist_ok=True)
    raw_path, coded_path = work / "raw.parquet", work / "coded.parquet"

    # 1. parse and check every field in one streaming scan
    say("scanning")
    t = src.table()
    lf, optional = _typed_rows(src, t)
    _sink(t, lf, raw_path)
    raw = pl.scan_parquet(raw_path)
    facts = (
        raw.select(
            pl.len().alias("n"),
            pl.col(LINE).filter(pl.col(_BAD)).min().alias("bad"),
            pl.col(_RAW_ISO).is_not_null().sum().alias("iso"),
        )
        .collect(engine="streaming")
        .row(0, named=True)
    )
    if facts["n"] == 0:
        raise DataError("no data rows", path=src.path)
    bad_line: int | None = facts["bad"]
    iso_fix: pl.DataFrame | None = None
    if facts["iso"]:  # ISO date-times: parsed in memory, only those values, exactly as the readers do
        iso = raw.filter(pl.col(_RAW_ISO).is_not_null()).select(LINE, C.POSITION, _RAW_ISO).collect()
        iso = iso.with_columns(iso_seconds(iso.get_column(_RAW_ISO).str.strip_chars()).alias("_ts"))
        failed = iso.filter(pl.col("_ts").is_null()).get_column(LINE)
        if len(failed):
            bad_line = min(int(failed.min()), bad_line or int(failed.min()))  # type: ignore[arg-type]
        iso_fix = iso.select(C.POSITION, "_ts")
    if bad_line is not None:
        raise explain(t, int(bad_line), src.kinds, optional)

    # 2. id maps: users and items numbered by first appearance in the file
    say("numbering")
    users = (
        raw.group_by(C.USER)
        .agg(pl.col(C.POSITION).min().alias("_first"), pl.len().alias("_n"))
        .sort("_first")
        .collect(engine="streaming")
    )
    items = raw.group_by(C.ITEM).agg(pl.col(C.POSITION).min().alias("_first")).sort("_first")
    item_ids = items.collect(engine="streaming").get_column(C.ITEM)
    counts = users.get_column("_n").to_numpy().astype(np.int64)
    indptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    n = int(indptr[-1])

    # 3. coded rows: internal ints instead of strings
    say("coding")
    umap = users.select(C.USER, pl.int_range(pl.len(), dtype=pl.Int32).alias("_u")).lazy()
    imap = pl.DataFrame({C.ITEM: item_ids, "_i": pl.int_range(len(item_ids), dtype=pl.Int32, eager=True)})
    coded = raw.join(umap, on=C.USER, how="left").join(imap.lazy(), on=C.ITEM, how="left")
    ts = pl.col(C.TIMESTAMP)
    if iso_fix is not None:
        coded = coded.join(iso_fix.lazy(), on=C.POSITION, how="left")
        ts = pl.coalesce(C.TIMESTAMP, "_ts")
    has_ts = C.TIMESTAMP in src.cols
    coded.select(
        pl.col("_u").alias(C.USER), pl.col("_i").alias(C.ITEM), ts.alias(C.TIMESTAMP), C.POSITION, C.WEIGHT
    ).sink_parquet(coded_path, engine="streaming", compression="lz4")
    raw_path.unlink()
    del users

    # 4. per user range: sort by (user, time, position) in memory, append to the arrays
    arrays = {
        "items": NpyWriter(tmp, "items", n),
        "positions": NpyWriter(tmp, "positions", n),
        "weights": NpyWriter(tmp, "weights", n),
        **({"timestamps": NpyWriter(tmp, "timestamps", n)} if has_ts else {}),
    }
    bounds = _buckets(indptr, chunk_rows)
    scan = pl.scan_parquet(coded_path)
    for b, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        part = (
            scan.filter(pl.col(C.USER).is_between(lo, hi - 1))
            .collect(engine="streaming")
            .sort([C.USER, C.TIMESTAMP, C.POSITION], nulls_last=True)
        )
        if part.height != indptr[hi] - indptr[lo]:  # pragma: no cover - a bug, not bad data
            raise RuntimeError(f"users {lo}..{hi}: {part.height} rows, expected {indptr[hi] - indptr[lo]}")
        arrays["items"].write(part.get_column(C.ITEM).to_numpy())
        arrays["positions"].write(part.get_column(C.POSITION).to_numpy())
        arrays["weights"].write(part.get_column(C.WEIGHT).to_numpy())
        if has_ts:
            arrays["timestamps"].write(part.get_column(C.TIMESTAMP).fill_null(NO_TIME).to_numpy())
        say(f"sorted users {hi}/{len(indptr) - 1} ({b + 1}/{len(bounds) - 1})")
        del part
    entries: dict[str, Entry | None] = {k: w.close() for k, w in arrays.items()}
    entries["indptr"] = save_array(tmp, "indptr", indptr)

    # 5. tables, then the manifest
    say("tables")
    items_map = IdMap(item_ids)
    meta = src.meta(items_map)
    kind = "movie" if src.kind == "ml-csv" else None
    tables = {
        "users": save_table(tmp, "users", umap.select(pl.col(C.USER).alias("external")).collect()),
        "items": save_table(tmp, "items", align_meta(items_map, meta, kind)),
    }
    shutil.rmtree(work)
    write_manifest(
        tmp, name=src.name, source=str(src.path), n_users=len(indptr) - 1, n_items=len(items_map), n=n,
        arrays=entries, tables=tables, events=[src.event] if src.event else [], has_ts=has_ts,
    )  # fmt: skip


def _buckets(indptr: np.ndarray, chunk_rows: int) -> list[int]:
    """User boundaries so that each range holds about `chunk_rows` events (at least one user)."""
    n_users, n = len(indptr) - 1, int(indptr[-1])
    cuts = np.searchsorted(indptr, np.arange(chunk_rows, n, chunk_rows), side="right") - 1
    return sorted({0, n_users, *(int(c) for c in cuts if 0 < c < n_users)})
