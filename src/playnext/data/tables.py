"""Text tables read as string fields with line numbers, then cast and checked in one vectorised pass.

Bad input never escapes as a polars, decoding or value error. Every field is first read as a
string and cast in one vectorised pass; only when a record fails is it traced back to its
line (a second, filtered pass) and reported as a `DataError` naming the file, the 1-based
line and the field. Checking therefore costs no Python work per row, so ML-32M still
streams through polars. The dataset readers and the prepared store both parse through here,
so a bad file fails with the same message whichever reads it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from playnext.errors import DataError

Kind = Literal["id", "text", "int", "float", "time"]
LINE = "_line"  # 1-based line number of a record
OK = "_ok"  # the record has the right number of fields
COUNT = "_n"  # how many fields it has, where known

# a corrupt Parquet file can make polars' Rust decoder panic: PanicException is a BaseException
POLARS_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException)

_EXPECTED: dict[str, str] = {
    "id": "an id",
    "text": "a value",
    "int": "an integer",
    "float": "a finite number",
    "time": "a unix timestamp or an ISO date-time",
}
_SEP_NAMES = {"\t": "tabs", ",": "commas", " ": "spaces", ";": "semicolons", None: "spaces or tabs"}


@dataclass(frozen=True)
class Text:
    """A text file to parse. `data` holds its UTF-8 bytes when it had to be transcoded."""

    path: Path
    data: bytes | None = None

    @property
    def source(self) -> Path | bytes:
        return self.path if self.data is None else self.data


@dataclass(frozen=True)
class Table:
    """A file's records as string fields, read lazily: `_line`, one column per field, `_ok`."""

    text: Text
    frame: pl.LazyFrame
    fields: tuple[str, ...]
    sep: str | None
    style: Literal["lines", "csv", "rows"]

    @property
    def layout(self) -> str:
        return f"{len(self.fields)} fields separated by {_sep_name(self.sep)}"


def _sep_name(sep: str | None) -> str:
    return _SEP_NAMES.get(sep, repr(sep))


def require_file(path: Path) -> Path:
    """`path`, if it is a non-empty file; a DataError saying what it is otherwise."""
    if not path.exists():
        raise DataError("file not found", path=path)
    if not path.is_file():
        raise DataError("expected a file, got a folder", path=path)
    if path.stat().st_size == 0:
        raise DataError("the file is empty", path=path)
    return path


def open_text(path: Path, *, latin1: bool = False) -> Text:
    """A UTF-8 file; with `latin1`, an older file that is not valid UTF-8 is transcoded from latin-1."""
    require_file(path)
    if not latin1:
        return Text(path)
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return Text(path, raw.decode("latin-1").encode("utf-8"))
    return Text(path)


def split_lines(
    text: Text, sep: str | None, fields: Sequence[str], *, header: bool = False, parts_column: bool = False
) -> Table:
    """Split every line on `sep` (any string; None = runs of spaces/tabs). Quotes are not special."""
    lines = pl.scan_csv(
        text.source,
        has_header=False,
        separator="\x1f",  # a byte no text file uses: each line is one field
        quote_char=None,
        schema={"_text": pl.String},
        glob=False,
    ).with_row_index(LINE, offset=1)
    s = pl.when(pl.col(LINE) == 1).then(pl.col("_text").str.strip_prefix("\ufeff")).otherwise(pl.col("_text"))
    if sep is None:
        s = s.str.strip_chars(" \t").str.replace_all(r"[ \t]+", " ")
    frame = lines.select(LINE, s.alias("_s"))
    frame = frame.filter(pl.col("_s").str.strip_chars().str.len_bytes() > 0)  # blank lines are skipped
    if header:
        frame = frame.filter(pl.col(LINE) > 1)
    frame = frame.with_columns(pl.col("_s").str.split(" " if sep is None else sep).alias("_parts"))
    parts = pl.col("_parts")
    frame = frame.select(
        LINE,
        *[parts.list.get(i, null_on_oob=True).alias(f) for i, f in enumerate(fields)],
        (parts.list.len() == len(fields)).alias(OK),
        parts.list.len().alias(COUNT),
        *([parts.alias("_parts")] if parts_column else []),
    )
    return Table(text, frame, tuple(fields), sep, "lines")


def scan_fields(text: Text, sep: str, fields: Sequence[str], *, header: bool) -> Table:
    """A delimited file with CSV quoting; a spare column catches records with too many fields."""
    schema = {f: pl.String for f in fields} | {"_extra": pl.String}
    frame = pl.scan_csv(
        text.source,
        has_header=False,
        separator=sep,
        quote_char='"',
        schema=schema,
        truncate_ragged_lines=True,
        missing_columns="insert",
        glob=False,
    ).with_row_index(LINE, offset=1)
    first = pl.col(fields[0])
    frame = frame.with_columns(
        pl.when(pl.col(LINE) == 1).then(first.str.strip_prefix("\ufeff")).otherwise(first).alias(fields[0])
    )
    if header:
        frame = frame.filter(pl.col(LINE) > 1)
    frame = frame.filter(~pl.all_horizontal([pl.col(f).is_null() for f in fields])).with_columns(
        pl.col("_extra").is_null().alias(OK), pl.lit(None, dtype=pl.UInt32).alias(COUNT)
    )
    return Table(text, frame, tuple(fields), sep, "csv")


def split_record(line: str, sep: str | None) -> list[str]:
    """One line's fields, as `scan_fields` (one-character `sep`) or `split_lines` would cut them."""
    if sep is None:
        return line.split()
    if len(sep) == 1:
        try:
            return next(csv.reader([line], delimiter=sep), [])
        except csv.Error:  # a field over csv's size limit, a stray carriage return: split without quotes
            return line.split(sep)
    return line.split(sep)


def line_text(text: Text, lineno: int) -> str:
    """One physical line, decoded leniently (only used to explain an error)."""
    with io.BytesIO(text.data) if text.data is not None else open(text.path, "rb") as f:
        for i, raw in enumerate(f, 1):
            if i == lineno:
                return raw.decode("utf-8", errors="replace").rstrip("\r\n").lstrip("\ufeff")
    return ""


def snip(s: str, n: int = 80) -> str:
    """`s` quoted for an error message, cut to `n` characters."""
    return repr(s if len(s) <= n else s[:n] + "…")


def check_header(text: Text, expected: Sequence[str], sep: str) -> None:
    line = line_text(text, 1)
    got = [g.strip().lower() for g in split_record(line, sep)]
    if got != [e.lower() for e in expected]:
        hint = f" (wrong separator? expected {_sep_name(sep)})" if len(got) != len(expected) else ""
        raise DataError(
            f"expected the header {sep.join(expected)!r}, got {snip(line)}{hint}", path=text.path, line=1
        )


def clean(col: pl.Expr, kind: Kind) -> pl.Expr:
    """The raw field, null when blank; ids and numbers without surrounding spaces."""
    stripped = col.str.strip_chars()
    return pl.when(stripped.str.len_bytes() > 0).then(col if kind == "text" else stripped)


def convert(raw: pl.Expr, kind: Kind) -> pl.Expr:
    """Vectorised cast of a cleaned field; null where the value is not of its kind."""
    if kind in ("id", "text"):
        return raw
    if kind == "int":
        return raw.cast(pl.Int64, strict=False)
    number = raw.cast(pl.Float64, strict=False)
    finite = pl.when(number.is_finite()).then(number)
    if kind == "float":
        return finite
    return pl.coalesce(raw.cast(pl.Int64, strict=False), finite.floor().cast(pl.Int64, strict=False))


def iso_seconds(values: pl.Series) -> pl.Series:
    """ISO date-times as unix seconds (UTC when no zone is given); null where unparseable."""
    try:
        return values.str.to_datetime(strict=False, time_unit="us").dt.epoch("s").cast(pl.Int64)
    except pl.exceptions.PolarsError:  # no format fits the first value
        return pl.Series(values.name, [None] * len(values), dtype=pl.Int64)


def typed(
    t: Table, kinds: Mapping[str, Kind], *, optional: Collection[str] = (), keep: Sequence[str] = ()
) -> pl.DataFrame:
    """Cast fields to their kinds. The first bad record raises a DataError with file, line and field."""
    exprs: list[pl.Expr] = []
    for name, kind in kinds.items():
        raw = clean(pl.col(name), kind)
        value = convert(raw, kind)
        exprs += [value.alias(name), raw.is_not_null().alias(f"_has:{name}")]
        if kind == "time":  # not numeric: kept to try ISO parsing on just those values
            exprs.append(pl.when(value.is_null()).then(raw).alias(f"_iso:{name}"))
    df = collect(t, t.frame.select(LINE, OK, *exprs, *keep))
    if df.height == 0:
        raise DataError("no data rows", path=t.text.path)
    for name, kind in kinds.items():
        iso = df.get_column(f"_iso:{name}") if kind == "time" else None
        if iso is not None and iso.null_count() < len(iso):
            df = df.with_columns(pl.coalesce(pl.col(name), iso_seconds(iso)).alias(name))
    bad = ~pl.col(OK)
    for name in kinds:
        has = pl.col(f"_has:{name}")
        bad = bad | (has & pl.col(name).is_null())
        if name not in optional:
            bad = bad | ~has
    rows = df.select(bad.alias("_bad")).to_series().arg_true()
    if len(rows):
        raise explain(t, int(df.get_column(LINE)[int(rows[0])]), kinds, optional)
    return df.select(LINE, *kinds, *keep)


def check_allowed(df: pl.DataFrame, field: str, allowed: Sequence[object], path: Path) -> None:
    """A field that must take one of a few values (a flag, a behaviour)."""
    bad = (~df.get_column(field).is_in(list(allowed)) & df.get_column(field).is_not_null()).arg_true()
    if len(bad):
        r = df.row(int(bad[0]), named=True)
        expected = " or ".join(repr(a) for a in allowed)
        raise DataError(
            f"expected {expected}, got {snip(str(r[field]))}", path=path, line=r[LINE], field=field
        )


def collect(t: Table, lf: pl.LazyFrame) -> pl.DataFrame:
    """`lf` (a query over `t`) collected; a polars failure becomes a DataError naming the cause."""
    try:
        return lf.collect(engine="streaming")
    except POLARS_ERRORS as e:
        raise diagnose(t, e) from None


def diagnose(t: Table, error: Exception) -> DataError:
    """Find why polars could not read a file: usually bytes that are not UTF-8."""
    if t.style != "rows":
        with io.BytesIO(t.text.data) if t.text.data is not None else open(t.text.path, "rb") as f:
            for i, raw in enumerate(f, 1):
                if b"\x1f" in raw:  # the byte `split_lines` relies on never seeing
                    return DataError("unexpected control character \\x1f", path=t.text.path, line=i)
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    field = None
                    if t.sep is not None:
                        k = raw[: e.start].count(t.sep.encode())
                        field = t.fields[k] if k < len(t.fields) else None
                    return DataError(
                        f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                        "save the file as UTF-8",
                        path=t.text.path,
                        line=i,
                        field=field,
                    )
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return DataError(f"could not read the file: {reason}", path=t.text.path)


def explain(t: Table, line: int, kinds: Mapping[str, Kind], optional: Collection[str]) -> DataError:
    """The precise reason why record `line` failed: field count first, then the first bad field."""
    row = collect(t, t.frame.filter(pl.col(LINE) == line)).row(0, named=True)
    where: dict[str, Any] = {"path": t.text.path, "line": line}
    count = row[COUNT]
    if t.style == "csv":
        count = len(split_record(line_text(t.text, line), t.sep))
    if t.style != "rows" and (not row[OK] or count != len(t.fields)) and count is not None:
        field = t.fields[count] if count < len(t.fields) else None
        text = line_text(t.text, line)
        return DataError(f"expected {t.layout}, found {count}: {snip(text)}", field=field, **where)
    for name, kind in kinds.items():
        raw = row[name]
        value = pl.DataFrame({"v": [raw]}, schema={"v": pl.String}).select(clean(pl.col("v"), kind))
        cleaned = value.item()
        if cleaned is None:
            if name not in optional:
                return DataError("missing value", field=name, **where)
            continue
        converted = value.select(convert(pl.col("v"), kind)).item()
        if converted is None and kind == "time":
            converted = iso_seconds(value.to_series()).item()
        if converted is None:
            return DataError(f"expected {_EXPECTED[kind]}, got {snip(raw)}", field=name, **where)
    return DataError(f"expected {t.layout}", **where)
