"""Writing a store's files into its staging folder: `.npy` arrays hashed as they stream, tables, manifest.

Nothing here syncs: the writer fills the folder inside `playnext.io.commit_dir`, which syncs
every file and the folder before renaming it into place.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import polars as pl

from playnext.data.store.format import ARRAYS, FORMAT, MANIFEST, TABLES, VERSION
from playnext.io import sha256_file, write_json

Entry = dict[str, Any]
"""A file's manifest entry: name, dtype and shape (arrays) or rows (tables), bytes, sha256."""


class NpyWriter:
    """Appends to a `.npy` file whose length is known up front, hashing the bytes as they go."""

    def __init__(self, folder: Path, name: str, n: int) -> None:
        file, dtype = ARRAYS[name]
        self.path = folder / file
        self.dtype = np.dtype(dtype)
        self.n = n
        self.count = 0
        self.sha = hashlib.sha256()
        self.f: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (n,)}
        )
        self._put(header.getvalue())

    def _put(self, data: bytes | memoryview) -> None:
        self.f.write(data)
        self.sha.update(data)

    def write(self, values: np.ndarray) -> None:
        arr = np.ascontiguousarray(values, dtype=self.dtype)
        self.count += len(arr)
        self._put(arr.data.cast("B"))

    def close(self) -> Entry:
        if self.count != self.n:  # pragma: no cover - a bug, not bad data
            raise RuntimeError(f"{self.path.name}: wrote {self.count} values, expected {self.n}")
        self.f.close()
        return {
            "file": self.path.name,
            "dtype": self.dtype.str,
            "shape": [self.n],
            "bytes": self.path.stat().st_size,
            "sha256": self.sha.hexdigest(),
        }


def save_array(folder: Path, name: str, values: np.ndarray) -> Entry:
    w = NpyWriter(folder, name, len(values))
    w.write(values)
    return w.close()


def save_table(folder: Path, name: str, frame: pl.DataFrame) -> Entry:
    path = folder / TABLES[name]
    frame.write_parquet(path)
    return {
        "file": path.name,
        "rows": frame.height,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }


def write_manifest(
    folder: Path,
    *,
    name: str,
    source: str,
    n_users: int,
    n_items: int,
    n: int,
    arrays: Mapping[str, Entry | None],
    tables: Mapping[str, Entry],
    events: Sequence[str],
    has_ts: bool,
) -> None:
    """The manifest, written last: a store is complete exactly when its manifest is there."""
    from playnext.version import __version__

    write_json(
        folder / MANIFEST,
        {
            "format": FORMAT,
            "version": VERSION,
            "name": name,
            "source": source,
            "n_users": n_users,
            "n_items": n_items,
            "n_interactions": n,
            "has_timestamps": has_ts,
            "order": "user (first appearance), timestamp (missing last), file position",
            "events": list(events),  # one name: every event; several: events.npy codes (-1 = none)
            "arrays": dict(arrays),
            "tables": dict(tables),
            "playnext": __version__,
        },
    )
