"""What `prepare` reads: a log file resolved to its table, column mapping and kinds, as the readers see it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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
from playnext.data.interactions import Columns, IdMap
from playnext.data.readers.common import find_folder
from playnext.data.readers.generic import SEQ_KINDS, seq_table
from playnext.data.readers.movies import ML_CSV, ML_CSV_KINDS, movies_csv_meta, ratings_csv_table
from playnext.data.tables import Kind, Table, open_text, require_file
from playnext.errors import ConfigError, DataError

C = Columns
Format = Literal["auto", "ml-csv", "csv", "parquet", "seq"]
_SYNTHETIC_COLS = {C.USER: C.USER, C.ITEM: C.ITEM, C.TIMESTAMP: C.TIMESTAMP}


@dataclass(frozen=True)
class Source:
    """What to read and how: the file(s), the column mapping (ours -> theirs) and their kinds."""

    kind: Literal["ml-csv", "csv", "parquet", "seq"]
    path: Path
    name: str
    cols: Mapping[str, str]
    kinds: Mapping[str, Kind]
    files: tuple[Path, ...] = ()
    fields: tuple[str, ...] = ()
    sep: str = ","
    has_header: bool = True
    event: str | None = None
    meta_file: Path | None = None
    kind_from_id: bool = False  # synthetic ids spell the kind: "movie-17-2"
    required: tuple[str, ...] = (C.USER, C.ITEM)  # our columns that may not be blank

    @property
    def optional(self) -> list[str]:
        return optional_columns(self.cols, self.required)

    def table(self) -> Table:
        """The records as string fields with line numbers, read lazily (as the readers do)."""
        if self.kind == "ml-csv":
            return ratings_csv_table(self.path)
        if self.kind == "seq":
            return seq_table(self.path)
        if self.kind == "csv":
            return delimited_table(open_text(self.path), self.sep, self.fields, header=self.has_header)
        try:
            lf = pl.scan_parquet(list(self.files), glob=False)
            schema = lf.collect_schema()
        except PARQUET_ERRORS as e:
            raise DataError(f"not a readable Parquet file: {first_line(e)}", path=self.path) from None
        return parquet_table(lf, schema, self.cols, self.path)

    def meta(self, items: IdMap) -> pl.DataFrame | None:
        """Item metadata the source carries: movies.csv beside ratings.csv; the kind of a synthetic id."""
        if self.meta_file is not None:
            return movies_csv_meta(self.meta_file)
        if self.kind_from_id:
            return pl.DataFrame({C.ITEM_ID: items.external}).with_columns(
                pl.col(C.ITEM_ID).str.extract(r"^([a-z]+)-", 1).alias(C.KIND)
            )
        return None


def synthetic_source(folder: Path, files: tuple[Path, ...]) -> Source:
    """Generated Parquet parts of external (user, item, timestamp); ids spell the item's kind."""
    return Source(
        kind="parquet", path=folder, files=files, name="synthetic",
        cols=_SYNTHETIC_COLS, kinds=column_kinds(_SYNTHETIC_COLS), kind_from_id=True,
    )  # fmt: skip


def plan(
    path: Path,
    format: Format,
    name: str | None,
    given: dict[str, str | int | None],
    separator: str,
    has_header: bool,
) -> Source:
    """Resolve `format="auto"`, check the file and the column mapping; nothing is parsed yet."""
    if format == "auto":
        if path.is_dir() or path.name == "ratings.csv":
            format = "ml-csv"
        elif path.suffix.lower() == ".parquet":
            format = "parquet"
        elif path.suffix.lower() in (".csv", ".tsv"):
            format = "csv"
            separator = "\t" if path.suffix.lower() == ".tsv" and separator == "," else separator
        else:
            format = "seq"
    if format == "ml-csv":
        folder = find_folder(path, ("ratings.csv",))
        f = ML_CSV
        return Source(
            "ml-csv", folder / "ratings.csv", name or "ml-32m",
            {C.USER: f[0], C.ITEM: f[1], C.WEIGHT: f[2], C.TIMESTAMP: f[3]},
            ML_CSV_KINDS,
            event="rating",
            required=(C.USER, C.ITEM, C.WEIGHT, C.TIMESTAMP),
            meta_file=folder / "movies.csv" if (folder / "movies.csv").is_file() else None,
        )  # fmt: skip
    if format == "seq":
        return Source(
            "seq", require_file(path), name or "seq", {C.USER: "user", C.ITEM: "item"}, SEQ_KINDS, sep=" "
        )
    if format == "parquet":
        require_file(path)
        cols = map_columns(parquet_columns(path), True, given, path)
        return Source("parquet", path, name or "parquet", cols, column_kinds(cols), files=(path,))
    if format == "csv":
        sep = parse_separator(separator)
        names = header_names(open_text(require_file(path)), sep, has_header)
        cols = map_columns(names, has_header, given, path)
        return Source(
            "csv",
            path,
            name or "csv",
            cols,
            column_kinds(cols),
            fields=tuple(names),
            sep=sep,
            has_header=has_header,
        )
    raise ConfigError(f"format must be one of auto, ml-csv, csv, parquet, seq; got {format!r}")
