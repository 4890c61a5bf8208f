"""Readers of any log: a CSV/TSV or Parquet table with a column mapping, and the sequence formats."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from playnext.data.columns import (
    PARQUET_ERRORS,
    column_kinds,
    delimited_table,
    first_line,
    header_names,
    map_columns,
    optional_columns,
    parquet_columns,
    parquet_table,
    parse_separator,
)
from playnext.data.events import check_values
from playnext.data.interactions import Columns, Interactions
from playnext.data.readers.common import build, ids, meta_row
from playnext.data.readers.items import read_items
from playnext.data.readers.registry import register
from playnext.data.tables import LINE, OK, Kind, Table, open_text, require_file, split_lines, typed
from playnext.errors import ConfigError, DataError

C = Columns
SEQ_KINDS: dict[str, Kind] = {"user": "id", "item": "id"}


def _from_mapped(
    df: pl.DataFrame,
    cols: Mapping[str, str],
    name: str,
    kind: str | None,
    path: Path,
    items: pl.DataFrame | None = None,
) -> Interactions:
    if C.WEIGHT in cols and C.EVENT in cols:
        check_values(df, cols[C.WEIGHT], path, event_field=cols[C.EVENT])
    raw = df.select([pl.col(src).alias(ours) for ours, src in cols.items() if ours != C.TITLE])
    if C.WEIGHT in raw.columns:
        raw = raw.with_columns(pl.col(C.WEIGHT).fill_null(1.0))
    meta = None
    if C.TITLE in cols:
        meta = (
            df.select(pl.col(cols[C.ITEM]).alias("_i"), pl.col(cols[C.TITLE]).alias("_t"))
            .filter(pl.col("_t").is_not_null())
            .unique("_i", keep="first", maintain_order=True)
            .select(meta_row(pl.col("_i"), pl.col("_t"), None, None, kind))
        )
    return build(raw, _with_items(meta, items), name, kind)


def _with_items(meta: pl.DataFrame | None, items: pl.DataFrame | None) -> pl.DataFrame | None:
    """The items file's metadata first; the log's own titles fill the titles it lacks."""
    if items is None or meta is None:
        return items if items is not None else meta
    titles = meta.select(C.ITEM_ID, pl.col(C.TITLE).alias("_t"))
    filled = items.join(titles, on=C.ITEM_ID, how="left", maintain_order="left").select(
        C.ITEM_ID, pl.coalesce(C.TITLE, "_t").alias(C.TITLE), C.GENRES, C.YEAR, C.KIND
    )
    return pl.concat([filled, meta.join(items, on=C.ITEM_ID, how="anti")])


def _items(
    items: str | Path | None,
    fields: Mapping[str, str | None],
    separator: str | None,
    *,
    log_sep: str,
    log_item_col: str,
) -> pl.DataFrame | None:
    """The `items` option's file as metadata (None without one), separated like the log by default."""
    if items is None:
        if any(v is not None for v in fields.values()) or separator is not None:
            raise ConfigError("the items_* options describe an items file: give it with items=FILE (--items)")
        return None
    return read_items(items, fields, separator=separator or log_sep, item_col=log_item_col)


def _value_col(weight_col: str | int | None, value_col: str | int | None) -> str | int | None:
    """The event value is the weight column: `value_col` says so in the typed-event vocabulary."""
    if weight_col is not None and value_col is not None:
        raise ConfigError("give weight_col or value_col (the same column), not both")
    return weight_col if weight_col is not None else value_col


@register("csv")
def _csv(
    path: Path,
    name: str,
    *,
    user_col: str | int | None = None,
    item_col: str | int | None = None,
    timestamp_col: str | int | None = None,
    weight_col: str | int | None = None,
    event_col: str | int | None = None,
    value_col: str | int | None = None,
    title_col: str | int | None = None,
    separator: str = ",",
    has_header: bool = True,
    kind: str | None = None,
    items: str | Path | None = None,
    items_id_col: str | None = None,
    items_title_col: str | None = None,
    items_genres_col: str | None = None,
    items_year_col: str | None = None,
    items_kind_col: str | None = None,
    items_separator: str | None = None,
) -> Interactions:
    """Any delimited text file. Columns are named (with a header) or given as 0-based indices.

    Timestamps may be unix seconds or ISO date-times. Rows keep file order as the tie-breaker.
    `event_col` names each row's event type (play, skip, rating, …) and `value_col` its value
    (an alias of `weight_col`); values outside a registered type's range are refused.
    A multi-character separator such as '::' splits lines literally, without quoting.
    `items` names an item-metadata file (readers/items.py), separated like the log unless
    `items_separator` says otherwise.
    """
    sep = parse_separator(separator)
    if not isinstance(has_header, bool):
        raise ConfigError(f"has_header must be true or false, got {has_header!r}")
    text = open_text(require_file(path))
    names = header_names(text, sep, has_header)
    given = {
        C.USER: user_col, C.ITEM: item_col, C.TIMESTAMP: timestamp_col,
        C.WEIGHT: _value_col(weight_col, value_col), C.EVENT: event_col, C.TITLE: title_col,
    }  # fmt: skip
    cols = map_columns(names, has_header, given, path)
    fields = {
        "id": items_id_col, "title": items_title_col, "genres": items_genres_col,
        "year": items_year_col, "kind": items_kind_col,
    }  # fmt: skip
    meta = _items(items, fields, items_separator, log_sep=sep, log_item_col=cols[C.ITEM])
    t = delimited_table(text, sep, names, header=has_header)
    df = typed(t, column_kinds(cols), optional=optional_columns(cols))
    return _from_mapped(df, cols, name, kind, path, meta)


@register("parquet")
def _parquet(
    path: Path,
    name: str,
    *,
    user_col: str | int | None = None,
    item_col: str | int | None = None,
    timestamp_col: str | int | None = None,
    weight_col: str | int | None = None,
    event_col: str | int | None = None,
    value_col: str | int | None = None,
    title_col: str | int | None = None,
    kind: str | None = None,
    items: str | Path | None = None,
    items_id_col: str | None = None,
    items_title_col: str | None = None,
    items_genres_col: str | None = None,
    items_year_col: str | None = None,
    items_kind_col: str | None = None,
    items_separator: str | None = None,
) -> Interactions:
    """A Parquet table with a column mapping. Errors name the 1-based row as the line.

    `items` names an item-metadata file (Parquet, or a CSV separated by `items_separator`, ',').
    """
    require_file(path)
    names = parquet_columns(path)
    given = {
        C.USER: user_col, C.ITEM: item_col, C.TIMESTAMP: timestamp_col,
        C.WEIGHT: _value_col(weight_col, value_col), C.EVENT: event_col, C.TITLE: title_col,
    }  # fmt: skip
    cols = map_columns(names, True, given, path)
    fields = {
        "id": items_id_col, "title": items_title_col, "genres": items_genres_col,
        "year": items_year_col, "kind": items_kind_col,
    }  # fmt: skip
    meta = _items(items, fields, items_separator, log_sep=",", log_item_col=cols[C.ITEM])
    try:
        df = pl.read_parquet(path, columns=list(cols.values()))
    except PARQUET_ERRORS as e:
        raise DataError(f"not a readable Parquet file: {first_line(e)}", path=path) from None
    t = parquet_table(df.lazy(), df.schema, cols, path)
    return _from_mapped(
        typed(t, column_kinds(cols), optional=optional_columns(cols)), cols, name, kind, path, meta
    )


def seq_table(path: Path) -> Table:
    """`user item` lines (spaces or tabs) as string fields (the prepared store reads them too)."""
    return split_lines(open_text(require_file(path)), None, tuple(SEQ_KINDS))


@register("seq")
def _seq(path: Path, name: str, *, kind: str | None = None) -> Interactions:
    """SASRec/BERT4Rec benchmark files: one `user item` per line (spaces or tabs), in time order."""
    df = typed(seq_table(path), SEQ_KINDS)
    return build(df.select(ids("user", "item")), None, name, kind)


@register("userlines")
def _userlines(path: Path, name: str, *, kind: str | None = None) -> Interactions:
    """One line per user, `user item item …` (e.g. S3-Rec's LastFM.txt), in order along the line."""
    t = split_lines(open_text(require_file(path)), None, ("user", "item"), parts_column=True)
    # any number of items is fine, as long as there is at least one (checked below)
    t = Table(t.text, t.frame.with_columns(pl.lit(True).alias(OK)), ("user",), None, "lines")
    df = typed(t, {"user": "id"}, keep=("_parts",))
    short = df.get_column("_parts").list.len() < 2
    if short.any():
        line = int(df.get_column(LINE).filter(short)[0])
        raise DataError(
            "expected a user id followed by at least one item id", path=path, line=line, field="item"
        )
    raw = df.select(pl.col("user").alias(C.USER), pl.col("_parts").list.slice(1).alias(C.ITEM)).explode(
        C.ITEM
    )
    return build(raw, None, name, kind)
