"""Reading a prepared store: its manifest checked, its arrays memory-mapped read-only."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from playnext.data.interactions import Columns, Histories, IdMap, Interactions
from playnext.data.store.format import FORMAT, MANIFEST, NO_TIME, REQUIRED_ARRAYS, VERSION
from playnext.errors import ConfigError, DataError
from playnext.io import sha256_file

C = Columns


class Store:
    """A prepared dataset on disk. Arrays are memory-mapped read-only; id maps load on first use."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"Store({str(self.path)!r}, users={m['n_users']}, items={m['n_items']}, n={m['n_interactions']})"
        )

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def n_users(self) -> int:
        return int(self.manifest["n_users"])

    @property
    def n_items(self) -> int:
        return int(self.manifest["n_items"])

    def __len__(self) -> int:
        return int(self.manifest["n_interactions"])

    def array(self, name: str) -> np.ndarray | None:
        """One stored array as a read-only memory map (None when the dataset has none)."""
        entry = self.manifest["arrays"].get(name)
        if entry is None:
            return None
        out: np.ndarray = np.load(self.path / entry["file"], mmap_mode="r", allow_pickle=False)
        return out

    def _required(self, name: str) -> np.ndarray:
        arr = self.array(name)
        assert arr is not None, name  # the manifest check guarantees the required arrays
        return arr

    def sequences(self) -> Histories:
        """Every user's items in stable time order, backed by the memory maps (nothing is copied)."""
        return Histories(self._required("indptr"), self._required("items"))

    def timestamps(self) -> np.ndarray | None:
        """Unix seconds aligned with `sequences().items`; `np.iinfo(np.int64).min` marks a missing time."""
        return self.array("timestamps")

    def weights(self) -> np.ndarray:
        return self._required("weights")

    def item_counts(self) -> np.ndarray:
        """Interactions per item, read through the memory map in blocks."""
        items = self._required("items")
        counts = np.zeros(self.n_items, dtype=np.int64)
        for s in range(0, len(items), 1 << 24):
            counts += np.bincount(items[s : s + (1 << 24)], minlength=self.n_items)
        return counts

    @cached_property
    def users(self) -> IdMap:
        return IdMap(self._table("users").get_column("external"))

    @cached_property
    def meta(self) -> pl.DataFrame:
        return self._table("items")

    @cached_property
    def items(self) -> IdMap:
        return IdMap(self.meta.get_column(C.ITEM_ID))

    def _table(self, name: str) -> pl.DataFrame:
        return pl.read_parquet(self.path / self.manifest["tables"][name]["file"])

    def to_interactions(self, max_interactions: int = 50_000_000) -> Interactions:
        """The whole log as an in-memory `Interactions` (for data that fits; refuses above the cap)."""
        n = len(self)
        if n > max_interactions:
            raise ConfigError(
                f"{self.path}: {n:,} interactions exceed max_interactions={max_interactions:,}; "
                "read sequences() from the memory maps instead, or raise the cap"
            )
        seqs = self.sequences()
        times = self.timestamps()
        ts = (
            pl.Series(C.TIMESTAMP, np.asarray(times), dtype=pl.Int64).set(
                pl.Series(np.asarray(times) == NO_TIME), None
            )
            if times is not None
            else pl.repeat(None, n, dtype=pl.Int64, eager=True).alias(C.TIMESTAMP)
        )
        events = self.array("events")
        names = self.manifest["events"]
        if events is not None:
            codes = pl.Series(np.asarray(events), dtype=pl.Int16)
            event = pl.Series(names, dtype=pl.String).gather(codes.set(codes < 0, None))
        else:
            event = pl.repeat(names[0] if names else None, n, dtype=pl.String, eager=True)
        frame = pl.DataFrame(
            {
                C.USER: pl.Series(seqs.row_ids().astype(np.int32)),
                C.ITEM: pl.Series(np.asarray(seqs.items)),
                C.TIMESTAMP: ts,
                C.POSITION: pl.Series(np.asarray(self._required("positions"))),
                C.WEIGHT: pl.Series(np.asarray(self.weights())),
                C.EVENT: event.alias(C.EVENT),
            }
        )
        return Interactions(frame, self.users, self.items, self.meta, self.name)

    def verify(self) -> None:
        """Recompute every file's sha256 against the manifest (reads all the data once)."""
        for entry in [*self.manifest["arrays"].values(), *self.manifest["tables"].values()]:
            if entry is not None and sha256_file(self.path / entry["file"]) != entry["sha256"]:
                raise DataError(
                    "checksum mismatch: the file changed after the dataset was prepared; prepare it again",
                    path=self.path / entry["file"],
                )


def open_store(path: str | Path, *, verify: bool = False) -> Store:
    """Open a prepared dataset, checking its manifest, file sizes and array headers.

    A folder without a valid manifest (for example one left by a killed `prepare`) is refused
    with a DataError. `verify=True` also checks every sha256 (reads all the data).
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError("no prepared dataset here (not a folder); create one with prepare()", path=root)
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise DataError(
            "not a prepared dataset: manifest.json is missing (an interrupted prepare() leaves no "
            "manifest); prepare it again",
            path=root,
        )
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"unreadable manifest: {e}", path=mpath) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"not a {FORMAT} manifest", path=mpath)
    if manifest.get("version") != VERSION:
        raise DataError(
            f"dataset format version {manifest.get('version')!r}; this playnext reads version {VERSION}",
            path=mpath,
        )
    try:
        _check_files(root, manifest)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"malformed manifest ({type(e).__name__}: {e})", path=mpath) from None
    store = Store(root, manifest)
    if verify:
        store.verify()
    return store


def _check_files(root: Path, manifest: dict[str, Any]) -> None:
    n_users, n = int(manifest["n_users"]), int(manifest["n_interactions"])
    shapes = {"indptr": n_users + 1}
    arrays: dict[str, Any] = manifest["arrays"]
    for name in REQUIRED_ARRAYS:
        if arrays.get(name) is None:
            raise DataError(f"the manifest lists no {name} array", path=root / MANIFEST)
    for name, entry in [*arrays.items(), *manifest["tables"].items()]:
        if entry is None:
            continue
        file = root / entry["file"]
        if not file.is_file():
            raise DataError("missing file listed in the manifest; prepare the dataset again", path=file)
        if file.stat().st_size != int(entry["bytes"]):
            raise DataError(
                f"{file.stat().st_size} bytes, the manifest says {entry['bytes']} (truncated or replaced); "
                "prepare the dataset again",
                path=file,
            )
        if name in arrays and entry is arrays[name]:
            try:
                arr = np.load(file, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as e:
                raise DataError(f"not a NumPy array file: {e}", path=file) from None
            want = (shapes.get(name, n),)
            if arr.shape != want or arr.dtype.str != entry["dtype"]:
                raise DataError(
                    f"array {arr.dtype.str}{list(arr.shape)}, the manifest says {entry['dtype']}{list(want)}",
                    path=file,
                )
    indptr = np.load(root / arrays["indptr"]["file"], mmap_mode="r")
    if indptr[0] != 0 or indptr[-1] != n or (n_users and bool((np.diff(indptr) < 0).any())):
        raise DataError("indptr is not a valid CSR index", path=root / arrays["indptr"]["file"])
