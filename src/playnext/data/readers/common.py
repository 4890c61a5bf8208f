"""Parts every reader is built from: finding the dataset folder, ids, item metadata, `Interactions`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from playnext.data.interactions import Columns, Interactions
from playnext.errors import DataError

C = Columns


def build(raw: pl.DataFrame, meta: pl.DataFrame | None, name: str, kind: str | None) -> Interactions:
    """Interactions from external ids; `position` = order in the file, the time-order tie-breaker."""
    if C.POSITION not in raw.columns:
        raw = raw.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(C.POSITION))
    return Interactions.from_frame(raw, meta=meta, name=name, kind=kind)


def meta_row(
    ids: pl.Expr, title: pl.Expr, genres: pl.Expr | None, year: pl.Expr | None, kind: str | None
) -> list[pl.Expr]:
    """The expressions of one META_SCHEMA row per item."""
    return [
        ids.cast(pl.String).alias(C.ITEM_ID),
        title.cast(pl.String).alias(C.TITLE),
        (genres if genres is not None else pl.lit([], dtype=pl.List(pl.String))).alias(C.GENRES),
        (year if year is not None else pl.lit(None)).cast(pl.Int32).alias(C.YEAR),
        pl.lit(kind, dtype=pl.String).alias(C.KIND),
    ]


def find_folder(path: Path, candidates: Sequence[str]) -> Path:
    """The dataset folder: `path`, or its subfolder (e.g. ml-10M100K/), holding one of `candidates`."""
    if not path.exists():
        raise DataError("no such file or folder", path=path)
    if path.is_file():
        if path.name in candidates:
            return path.parent
        raise DataError(
            f"expected the dataset folder (with {' or '.join(candidates)}), got a file", path=path
        )
    subfolders = sorted(p for p in path.iterdir() if p.is_dir())
    for folder in (path, *subfolders):
        if any((folder / c).is_file() for c in candidates):
            return folder
    raise DataError("file not found (looked in this folder and its subfolders)", path=path / candidates[0])


def ids(user: str, item: str) -> list[pl.Expr]:
    """The file's user and item columns as our string ids."""
    return [pl.col(user).cast(pl.String).alias(C.USER), pl.col(item).cast(pl.String).alias(C.ITEM)]
