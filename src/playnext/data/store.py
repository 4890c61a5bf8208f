"""A prepared on-disk dataset: interaction logs larger than memory, read through memory maps.

`prepare` streams a log (MovieLens `ratings.csv`, any CSV, Parquet, `user item` lines, or an
in-memory `Interactions`) into a folder::

    manifest.json      counts, dtypes, shapes, byte sizes and sha256 of every file — written LAST
    indptr.npy         (n_users + 1,) int64: user u's events are [indptr[u], indptr[u + 1])
    items.npy          (n_interactions,) int32 internal item ids, per user in stable time order
    timestamps.npy     (n_interactions,) int64 unix seconds (absent when the log has no times)
    positions.npy      (n_interactions,) int64 0-based row in the source file (the tie-breaker)
    weights.npy        (n_interactions,) float32
    users.parquet      external user ids in internal-id order
    items.parquet      item metadata (item_id, title, genres, year, kind) in internal-id order

The order is the one `Interactions` uses everywhere: by user (numbered by first appearance),
then timestamp (missing last), then file position; ids are numbered exactly as the readers in
`datasets.py` number them, so `open_store(p).to_interactions()` equals `load_dataset(...)`.

Nothing is held per interaction in Python. Polars' streaming engine parses and checks the file
(the same vectorised checks, and the same DataError messages, as the readers), numbers users
and items, and writes coded rows to a scratch Parquet file; then users are cut into ranges of
about `chunk_rows` events, and each range is sorted in memory and appended to the `.npy` files.
Peak memory is therefore bounded by `chunk_rows` and by the id maps, not by the log.

Everything is written to a temporary sibling folder that is renamed into place only when
complete, and the manifest is written after every array has been synced. A killed ingestion
leaves at most a `.<name>.partial-*` folder without a manifest, which `open_store` refuses
and the next `prepare` into the same place removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import polars as pl

from playnext.data.columns import (
    PARQUET_ERRORS,
    column_kinds,
    delimited_table,
    first_line,
    header_names,
    map_columns,
    parquet_columns,
    parquet_table,
    parse_separator,
)
from playnext.data.interactions import META_SCHEMA, Columns, Histories, IdMap, Interactions, align_meta
from playnext.data.readers.common import find_folder
from playnext.data.readers.generic import SEQ_KINDS, seq_table
from playnext.data.readers.movies import ML_CSV, ML_CSV_KINDS, movies_csv_meta, ratings_csv_table
from playnext.data.tables import (
    LINE,
    OK,
    POLARS_ERRORS,
    Kind,
    Table,
    clean,
    convert,
    diagnose,
    explain,
    iso_seconds,
    open_text,
    require_file,
)
from playnext.errors import ConfigError, DataError

C = Columns
FORMAT = "playnext-store"
VERSION = 1
MANIFEST = "manifest.json"
Format = Literal["auto", "ml-csv", "csv", "parquet", "seq"]
Progress = Callable[[str], None]

_NO_TIME = np.iinfo(np.int64).min  # a missing timestamp in timestamps.npy
_ARRAYS: dict[str, tuple[str, str]] = {  # name -> (file, dtype)
    "indptr": ("indptr.npy", "<i8"),
    "items": ("items.npy", "<i4"),
    "timestamps": ("timestamps.npy", "<i8"),
    "positions": ("positions.npy", "<i8"),
    "weights": ("weights.npy", "<f4"),
    "events": ("events.npy", "<i2"),
}
_TABLES = {"users": "users.parquet", "items": "items.parquet"}
_HASH_BLOCK = 1 << 23


# ---- reading a prepared store ---------------------------------------------------------------------------
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
                pl.Series(np.asarray(times) == _NO_TIME), None
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
            if entry is not None and _sha256(self.path / entry["file"]) != entry["sha256"]:
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
    for name in ("indptr", "items", "positions", "weights"):
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


# ---- writing --------------------------------------------------------------------------------------------
def prepare(
    source: str | Path | Interactions,
    out_dir: str | Path,
    *,
    format: Format = "auto",
    name: str | None = None,
    user_col: str | int | None = None,
    item_col: str | int | None = None,
    timestamp_col: str | int | None = None,
    weight_col: str | int | None = None,
    separator: str = ",",
    has_header: bool = True,
    chunk_rows: int = 8_000_000,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Store:
    """Stream `source` into a prepared dataset at `out_dir` and open it.

    `format="auto"` picks MovieLens for a folder holding (or a file named) `ratings.csv`,
    Parquet for `*.parquet`, CSV for `*.csv`/`*.tsv` and `user item` lines otherwise. Column
    options work as for the `csv`/`parquet` readers. `chunk_rows` bounds how many events are
    sorted in memory at once. `progress` is called with a short message at every stage.
    """
    out = Path(out_dir).expanduser()
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be positive, got {chunk_rows}")
    _check_target(out, overwrite)
    say = progress or (lambda _msg: None)
    with _staging(out, overwrite) as tmp:
        if isinstance(source, Interactions):
            say("writing")
            _write_interactions(source, tmp, name or source.name)
        else:
            src = _plan(Path(source).expanduser(), format, name, {
                C.USER: user_col, C.ITEM: item_col, C.TIMESTAMP: timestamp_col, C.WEIGHT: weight_col,
            }, separator, has_header)  # fmt: skip
            _ingest(src, tmp, chunk_rows, say)
        say("committing")
    return open_store(out)


def prepare_synthetic(
    out_dir: str | Path,
    n_interactions: int = 30_000_000,
    *,
    n_items: int = 100_000,
    mean_length: float = 40.0,
    seed: int = 0,
    block_interactions: int = 2_000_000,
    chunk_rows: int = 8_000_000,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Store:
    """A synthetic log of about `n_interactions` events, generated in user blocks and streamed in.

    Block b is `generate_world(n_users=B, n_items, seed=seed + b)` with users renamed so they
    stay unique; blocks share the item id space but each draws its own catalog structure, so use
    this for scale, and `generate_world` itself where the planted answers matter.
    """
    out = Path(out_dir).expanduser()
    _check_target(out, overwrite)
    say = progress or (lambda _msg: None)
    with _staging(out, overwrite) as tmp:
        parts = tmp / "_work" / "parts"
        parts.mkdir(parents=True)
        files = []
        for b, block in enumerate(
            synthetic_blocks(n_interactions, n_items, mean_length, seed, block_interactions)
        ):
            files.append(parts / f"part-{b:05d}.parquet")
            block.write_parquet(files[-1])
            say(f"generated block {b + 1}")
        src = _Source(
            kind="parquet", path=parts, files=tuple(files), name="synthetic",
            cols=_SYNTHETIC_COLS, kinds=column_kinds(_SYNTHETIC_COLS), kind_from_id=True,
        )  # fmt: skip
        _ingest(src, tmp, chunk_rows, say)
        say("committing")
    return open_store(out)


def synthetic_blocks(
    n_interactions: int, n_items: int, mean_length: float, seed: int, block_interactions: int
) -> Iterator[pl.DataFrame]:
    """The synthetic world in blocks of users: frames of external (user, item, timestamp)."""
    from playnext.data.synthetic import generate_world

    users_per_block = max(1, int(block_interactions / mean_length))
    done, offset, b = 0, 0, 0
    while done < n_interactions:
        left = n_interactions - done
        # the last block asks for a few more users than needed and is cut to size
        n_users = min(users_per_block, int(left / mean_length * 1.1) + 10)
        world = generate_world(n_users=n_users, n_items=n_items, seed=seed + b, mean_length=mean_length)
        f = world.frame
        block = f.select(
            pl.format("u{}", pl.col(C.USER).cast(pl.Int64) + offset).alias(C.USER),
            world.items.external.gather(f.get_column(C.ITEM)).alias(C.ITEM),
            C.TIMESTAMP,
        )
        yield block.head(n_interactions - done)
        done += min(block.height, n_interactions - done)
        offset += world.n_users
        b += 1


@dataclass(frozen=True)
class _Source:
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
        return [col for ours, col in self.cols.items() if ours not in self.required]


_SYNTHETIC_COLS = {C.USER: C.USER, C.ITEM: C.ITEM, C.TIMESTAMP: C.TIMESTAMP}


def _plan(
    path: Path,
    format: Format,
    name: str | None,
    given: dict[str, str | int | None],
    separator: str,
    has_header: bool,
) -> _Source:
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
        return _Source(
            "ml-csv", folder / "ratings.csv", name or "ml-32m",
            {C.USER: f[0], C.ITEM: f[1], C.WEIGHT: f[2], C.TIMESTAMP: f[3]},
            ML_CSV_KINDS,
            event="rating",
            required=(C.USER, C.ITEM, C.WEIGHT, C.TIMESTAMP),
            meta_file=folder / "movies.csv" if (folder / "movies.csv").is_file() else None,
        )  # fmt: skip
    if format == "seq":
        return _Source("seq", require_file(path), name or "seq", {C.USER: "user", C.ITEM: "item"},
                       SEQ_KINDS, sep=" ")  # fmt: skip
    if format == "parquet":
        require_file(path)
        cols = map_columns(parquet_columns(path), True, given, path)
        return _Source("parquet", path, name or "parquet", cols, column_kinds(cols), files=(path,))
    if format == "csv":
        sep = parse_separator(separator)
        names = header_names(open_text(require_file(path)), sep, has_header)
        cols = map_columns(names, has_header, given, path)
        return _Source(
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


# ---- the streaming passes -------------------------------------------------------------------------------
_RAW_ISO = "_iso"  # a timestamp that is not a number: parsed as an ISO date-time after the scan
_BAD = "_bad"


def _table(src: _Source) -> Table:
    """The source's records as string fields with line numbers, read lazily (as the readers do)."""
    if src.kind == "ml-csv":
        return ratings_csv_table(src.path)
    if src.kind == "seq":
        return seq_table(src.path)
    if src.kind == "csv":
        return delimited_table(open_text(src.path), src.sep, src.fields, header=src.has_header)
    try:
        lf = pl.scan_parquet(list(src.files), glob=False)
        schema = lf.collect_schema()
    except PARQUET_ERRORS as e:
        raise DataError(f"not a readable Parquet file: {first_line(e)}", path=src.path) from None
    return parquet_table(lf, schema, src.cols, src.path)


def _typed_rows(src: _Source, t: Table) -> tuple[pl.LazyFrame, list[str]]:
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


def _ingest(src: _Source, tmp: Path, chunk_rows: int, say: Progress) -> None:
    work = tmp / "_work"
    work.mkdir(exist_ok=True)
    raw_path, coded_path = work / "raw.parquet", work / "coded.parquet"

    # 1. parse and check every field in one streaming scan
    say("scanning")
    t = _table(src)
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
        "items": _NpyWriter(tmp, "items", n),
        "positions": _NpyWriter(tmp, "positions", n),
        "weights": _NpyWriter(tmp, "weights", n),
        **({"timestamps": _NpyWriter(tmp, "timestamps", n)} if has_ts else {}),
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
            arrays["timestamps"].write(part.get_column(C.TIMESTAMP).fill_null(_NO_TIME).to_numpy())
        say(f"sorted users {hi}/{len(indptr) - 1} ({b + 1}/{len(bounds) - 1})")
        del part
    entries: dict[str, dict[str, Any] | None] = {k: w.close() for k, w in arrays.items()}
    entries["indptr"] = _save_array(tmp, "indptr", indptr)

    # 5. tables, then the manifest
    say("tables")
    items_map = IdMap(item_ids)
    meta = _source_meta(src, items_map)
    kind = "movie" if src.kind == "ml-csv" else None
    tables = {
        "users": _save_table(tmp, "users", umap.select(pl.col(C.USER).alias("external")).collect()),
        "items": _save_table(tmp, "items", align_meta(items_map, meta, kind)),
    }
    shutil.rmtree(work)
    _write_manifest(tmp, _manifest(src.name, str(src.path), len(indptr) - 1, len(items_map), n, entries,
                                   tables, [src.event] if src.event else [], has_ts))  # fmt: skip


def _buckets(indptr: np.ndarray, chunk_rows: int) -> list[int]:
    """User boundaries so that each range holds about `chunk_rows` events (at least one user)."""
    n_users, n = len(indptr) - 1, int(indptr[-1])
    cuts = np.searchsorted(indptr, np.arange(chunk_rows, n, chunk_rows), side="right") - 1
    return sorted({0, n_users, *(int(c) for c in cuts if 0 < c < n_users)})


def _source_meta(src: _Source, items: IdMap) -> pl.DataFrame | None:
    """Item metadata the source carries: movies.csv beside ratings.csv; the kind of a synthetic id."""
    if src.meta_file is not None:
        return movies_csv_meta(src.meta_file)
    if src.kind_from_id:
        return pl.DataFrame({C.ITEM_ID: items.external}).with_columns(
            pl.col(C.ITEM_ID).str.extract(r"^([a-z]+)-", 1).alias(C.KIND)
        )
    return None


def _write_interactions(data: Interactions, tmp: Path, name: str) -> None:
    """An in-memory log (already in canonical order) written as a store."""
    f = data.frame
    n = f.height
    counts = np.bincount(data.user_idx, minlength=data.n_users)
    indptr = np.zeros(data.n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    ts = f.get_column(C.TIMESTAMP)
    has_ts = ts.null_count() < n
    event = f.get_column(C.EVENT)
    names = sorted(event.drop_nulls().unique().to_list())
    entries: dict[str, dict[str, Any] | None] = {
        "indptr": _save_array(tmp, "indptr", indptr),
        "items": _save_array(tmp, "items", f.get_column(C.ITEM).to_numpy()),
        "positions": _save_array(tmp, "positions", f.get_column(C.POSITION).to_numpy()),
        "weights": _save_array(tmp, "weights", f.get_column(C.WEIGHT).to_numpy()),
    }
    if has_ts:
        entries["timestamps"] = _save_array(tmp, "timestamps", ts.fill_null(_NO_TIME).to_numpy())
    if len(names) > 1 or (names and event.null_count()):
        codes = event.replace_strict(names, list(range(len(names))), default=-1, return_dtype=pl.Int16)
        entries["events"] = _save_array(tmp, "events", codes.to_numpy())
    tables = {
        "users": _save_table(tmp, "users", pl.DataFrame({"external": data.users.external})),
        "items": _save_table(tmp, "items", data.meta.select(list(META_SCHEMA))),
    }
    _write_manifest(tmp, _manifest(name, "Interactions", data.n_users, data.n_items, n, entries, tables,
                                   names, has_ts))  # fmt: skip


# ---- files: arrays, tables, manifest, the atomic commit ----------------------------------------------------
class _NpyWriter:
    """Appends to a `.npy` file whose length is known up front, hashing the bytes as they go."""

    def __init__(self, folder: Path, name: str, n: int) -> None:
        file, dtype = _ARRAYS[name]
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

    def close(self) -> dict[str, Any]:
        if self.count != self.n:  # pragma: no cover - a bug, not bad data
            raise RuntimeError(f"{self.path.name}: wrote {self.count} values, expected {self.n}")
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        return {
            "file": self.path.name,
            "dtype": self.dtype.str,
            "shape": [self.n],
            "bytes": self.path.stat().st_size,
            "sha256": self.sha.hexdigest(),
        }


def _save_array(folder: Path, name: str, values: np.ndarray) -> dict[str, Any]:
    w = _NpyWriter(folder, name, len(values))
    w.write(values)
    return w.close()


def _save_table(folder: Path, name: str, frame: pl.DataFrame) -> dict[str, Any]:
    path = folder / _TABLES[name]
    frame.write_parquet(path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    return {"file": path.name, "rows": frame.height, "bytes": path.stat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def _manifest(
    name: str,
    source: str,
    n_users: int,
    n_items: int,
    n: int,
    arrays: Mapping[str, dict[str, Any] | None],
    tables: Mapping[str, dict[str, Any]],
    events: Sequence[str],
    has_ts: bool,
) -> dict[str, Any]:
    from playnext import __version__

    return {
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
    }


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Written last, synced, then the folder itself is synced: its presence means complete."""
    path = folder / MANIFEST
    with open(path, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_target(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not overwrite:
        raise ConfigError(f"{out} already exists; pass overwrite=True to replace it")
    if not out.is_dir() or not ((out / MANIFEST).is_file() or not any(out.iterdir())):
        raise ConfigError(f"{out} is not a prepared dataset or an empty folder; refusing to replace it")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(out: Path) -> None:
    """Leftovers of a killed `prepare` into the same place (its process is gone)."""
    for p in out.parent.glob(f".{out.name}.*-*-*"):
        kind, _, rest = p.name[len(out.name) + 2 :].partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("partial", "old") and pid.isdigit() and not _alive(int(pid)) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def _staging(out: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary sibling folder, renamed to `out` when the block completes, removed if it fails."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    try:
        yield tmp
        if not (tmp / MANIFEST).is_file():  # pragma: no cover - a bug, not bad data
            raise RuntimeError("prepare finished without writing a manifest")
        _check_target(out, overwrite)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
            os.replace(out, old / "store")
        os.replace(tmp, out)
        _fsync_dir(out.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
