"""An item-metadata file beside a generic log (`--items items.csv`): titles, genres, year, kind.

Id-only logs (a CSV of user, item, time) get the metadata search, the web page, explanations
and the content tower read. The file is a CSV/TSV with a header, or Parquet; its columns are
`id`, `title`, `genres` ('a|b'), `year` and `kind` unless the `items_*_col` options name others.
Only the id column is required; an item missing from the file falls back to its id.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from playnext.data.columns import (
    PARQUET_ERRORS,
    delimited_table,
    first_line,
    header_names,
    parquet_columns,
    parquet_table,
    parse_separator,
)
from playnext.data.interactions import META_SCHEMA, Columns
from playnext.data.tables import Kind, open_text, typed
from playnext.errors import ConfigError, DataError

C = Columns
FIELDS: dict[str, Kind] = {"id": "id", "title": "text", "genres": "text", "year": "int", "kind": "text"}
"""The file's fields (named by the `items_<field>_col` options) and how each is parsed."""
GENRE_SEPARATOR = "|"


def read_items(
    path: str | Path, cols: Mapping[str, str | None], *, separator: str = ",", item_col: str | None = None
) -> pl.DataFrame:
    """The file as item metadata (META_SCHEMA). `cols` maps a field to the file's column (None: the
    default name); the id column defaults to `id`, else the log's own item column name."""
    file = Path(path).expanduser()
    parquet = file.suffix.lower() in (".parquet", ".pq")
    if parquet:
        names = parquet_columns(file)
    else:
        text = open_text(file)
        names = header_names(text, parse_separator(separator), True)
    mapped = _map(names, cols, item_col, file)
    kinds = {src: FIELDS[ours] for ours, src in mapped.items()}
    optional = [src for ours, src in mapped.items() if ours != "id"]
    if parquet:
        try:
            df = pl.read_parquet(file, columns=list(mapped.values()))
        except PARQUET_ERRORS as e:
            raise DataError(f"not a readable Parquet file: {first_line(e)}", path=file) from None
        frame = typed(parquet_table(df.lazy(), df.schema, mapped, file), kinds, optional=optional)
    else:
        table = delimited_table(text, parse_separator(separator), names, header=True)
        frame = typed(table, kinds, optional=optional)

    def column(field: str, dtype: pl.DataType | type[pl.DataType]) -> pl.Expr:
        return pl.col(mapped[field]) if field in mapped else pl.lit(None, dtype=dtype)

    genres = pl.lit(None, dtype=pl.List(pl.String))
    if "genres" in mapped:
        split = pl.col(mapped["genres"]).str.split(GENRE_SEPARATOR).list.eval(pl.element().str.strip_chars())
        genres = split.list.eval(pl.element().filter(pl.element() != ""))
    return frame.select(
        pl.col(mapped["id"]).cast(pl.String).alias(C.ITEM_ID),
        column("title", pl.String).cast(pl.String).alias(C.TITLE),
        genres.alias(C.GENRES),
        column("year", pl.Int64).cast(pl.Int32, strict=False).alias(C.YEAR),
        column("kind", pl.String).cast(pl.String).alias(C.KIND),
    ).select(list(META_SCHEMA))


def _map(
    names: list[str], cols: Mapping[str, str | None], item_col: str | None, path: Path
) -> dict[str, str]:
    """Our field → the file's column; a named column must exist, a default one may be absent."""
    unknown = sorted(set(cols) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown items field(s): {', '.join(unknown)} (accepted: {', '.join(FIELDS)})")
    out: dict[str, str] = {}
    for field in FIELDS:
        given = cols.get(field)
        if given is not None:
            if not isinstance(given, str) or given not in names:
                columns = ", ".join(map(repr, names))
                raise DataError(
                    f"no column {given!r} (items_{field}_col); the columns are: {columns}",
                    path=path,
                    line=1,
                )
            out[field] = given
            continue
        defaults = (
            [field] if field != "id" else list(dict.fromkeys(["id", item_col or "id", C.ITEM_ID, C.ITEM]))
        )
        found = next((d for d in defaults if d in names), None)
        if found is not None:
            out[field] = found
        elif field == "id":
            raise DataError(
                f"no item id column (looked for {', '.join(map(repr, defaults))}; name it with "
                f"--option items_id_col=…); the columns are: {', '.join(map(repr, names))}",
                path=path,
                line=1,
            )
    if len(set(out.values())) != len(out):
        raise ConfigError(f"an items column is mapped twice: {out}")
    return out
