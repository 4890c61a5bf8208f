"""Any interaction log as a table: our columns (user, item, time, …) mapped onto a CSV or Parquet file's.

The `csv` and `parquet` readers and the prepared store's ingestion open logs through here,
so a column option or a bad column type fails the same way whichever reads the file.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import polars as pl

from playnext.data.interactions import Columns
from playnext.data.tables import (
    COUNT,
    LINE,
    OK,
    POLARS_ERRORS,
    Kind,
    Table,
    Text,
    line_text,
    scan_fields,
    split_lines,
    split_record,
)
from playnext.errors import ConfigError, DataError

C = Columns
SEPARATORS = {"\\t": "\t", "tab": "\t", "comma": ",", "space": " ", "semicolon": ";", "pipe": "|"}
"""Names a separator may be given by (on a command line a tab is awkward to type)."""
COL_KINDS: dict[str, Kind] = {
    C.USER: "id", C.ITEM: "id", C.TIMESTAMP: "time", C.WEIGHT: "float", C.EVENT: "text", C.TITLE: "text"
}  # fmt: skip
"""How each of our columns is parsed."""
PARQUET_ERRORS = (*POLARS_ERRORS, OSError)

_OPTIONS = {C.TIMESTAMP: "timestamp_col", C.WEIGHT: "weight_col", C.EVENT: "event_col", C.TITLE: "title_col"}


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def parse_separator(name: str) -> str:
    """The separator a user asked for: a character, a string such as '::', or a name ('tab')."""
    sep = SEPARATORS.get(name, name)
    if not isinstance(sep, str) or not sep:
        raise ConfigError(f"separator must be a non-empty string, got {name!r}")
    return sep


def header_names(text: Text, sep: str, has_header: bool) -> list[str]:
    """The file's column names: its header, or 'column 0', 'column 1', … without one."""
    first = split_record(line_text(text, 1), sep)
    names = [n.strip() for n in first] if has_header else [f"column {i}" for i in range(len(first))]
    if len(set(names)) != len(names):
        raise DataError(f"duplicate column names in the header: {names}", path=text.path, line=1)
    return names


def map_columns(
    names: Sequence[str], has_header: bool, given: Mapping[str, str | int | None], path: Path
) -> dict[str, str]:
    """Our column (user, item, …) → the file's column, from names or 0-based indices.

    Unmapped optional columns are taken when the header has them under our own name.
    """
    out: dict[str, str] = {}
    for ours, col in given.items():
        option = _OPTIONS.get(ours, f"{ours}_col")
        if col is None:
            if ours in (C.USER, C.ITEM):
                col = ours if has_header else (0 if ours == C.USER else 1)
            elif has_header and ours in names:
                col = ours
            else:
                continue
        if isinstance(col, bool) or not isinstance(col, str | int):
            raise ConfigError(f"{option} must be a column name or a 0-based index, got {col!r}")
        if isinstance(col, int):
            if not 0 <= col < len(names):
                raise DataError(
                    f"{option}={col}: the file has {len(names)} column(s){separator_hint(names)}",
                    path=path,
                    line=1,
                )
            col = names[col]
        if col not in names:
            raise DataError(
                f"no column {col!r} ({option}); the columns are: {', '.join(map(repr, names))}"
                f"{separator_hint(names)}",
                path=path,
                line=1 if has_header else None,
                field=col,
            )
        if col in out.values():
            raise ConfigError(f"column {col!r} is mapped twice ({option})")
        out[ours] = col
    return out


def separator_hint(names: Sequence[str]) -> str:
    """A one-column header holding another separator: how to say so (empty when it does not)."""
    if len(names) != 1:
        return ""
    for sep, name in ((";", ";"), ("\t", "tab"), ("|", "|"), (",", ","), ("::", "::")):
        if sep in names[0]:
            return f"; the header is one column: is the separator {name}? (--option separator='{name}')"
    return ""


def column_kinds(cols: Mapping[str, str]) -> dict[str, Kind]:
    """The file's mapped columns → how to parse them."""
    return {src: COL_KINDS[ours] for ours, src in cols.items()}


def optional_columns(cols: Mapping[str, str], required: Collection[str] = (C.USER, C.ITEM)) -> list[str]:
    """The file's mapped columns that may be blank."""
    return [src for ours, src in cols.items() if ours not in required]


def delimited_table(text: Text, sep: str, names: Sequence[str], *, header: bool) -> Table:
    """A delimited log: CSV quoting for a one-character separator; a longer one ('::') splits literally."""
    if len(sep) == 1:
        return scan_fields(text, sep, names, header=header)
    return split_lines(text, sep, names, header=header)


def parquet_columns(path: Path) -> list[str]:
    """The column names of a Parquet file (a DataError if it is not one)."""
    try:
        return list(pl.read_parquet_schema(path))
    except PARQUET_ERRORS as e:
        raise DataError(f"not a readable Parquet file: {first_line(e)}", path=path) from None


def parquet_table(lf: pl.LazyFrame, schema: pl.Schema, cols: Mapping[str, str], path: Path) -> Table:
    """Parquet rows as string fields, so typed values go through the same checks as text and fail alike.

    Dates become unix seconds; the 1-based row number stands in for the line.
    """
    as_text = []
    for src in cols.values():
        dtype = schema[src]
        col = pl.col(src)
        if dtype == pl.Date:
            col = col.cast(pl.Int64) * 86_400
        elif isinstance(dtype, pl.Datetime):
            col = col.dt.epoch("s")
        elif not (dtype.is_numeric() or isinstance(dtype, pl.String | pl.Categorical | pl.Enum | pl.Boolean)):
            raise DataError(f"unsupported column type {dtype}", path=path, field=src)
        as_text.append(col.cast(pl.String).alias(src))
    frame = (
        lf.select(*as_text)
        .with_row_index(LINE, offset=1)
        .select(LINE, *cols.values(), pl.lit(True).alias(OK), pl.lit(None, dtype=pl.UInt32).alias(COUNT))
    )
    return Table(Text(path), frame, tuple(cols.values()), None, "rows")
