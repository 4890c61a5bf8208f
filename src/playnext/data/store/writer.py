"""Writing a prepared store: from a log file (streamed, see `ingest`) or an in-memory `Interactions`.

Everything is written into a temporary sibling folder (`playnext.io.commit_dir`) that is
renamed into place only when complete, with the manifest written last. A killed ingestion
leaves at most a `.<name>.partial-<pid>-*` folder without a manifest, which `open_store`
refuses and the next `prepare` into the same place removes.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

from playnext.data.interactions import META_SCHEMA, Columns, Interactions
from playnext.data.store.files import Entry, save_array, save_table, write_manifest
from playnext.data.store.format import MANIFEST, NO_TIME
from playnext.data.store.ingest import Progress, ingest
from playnext.data.store.reader import Store, open_store
from playnext.data.store.sources import Format, plan, synthetic_source
from playnext.errors import ConfigError
from playnext.io import commit_dir

C = Columns


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
    with commit_dir(out, check=partial(_check_target, overwrite=overwrite)) as tmp:
        if isinstance(source, Interactions):
            say("writing")
            _write_interactions(source, tmp, name or source.name)
        else:
            src = plan(Path(source).expanduser(), format, name, {
                C.USER: user_col, C.ITEM: item_col, C.TIMESTAMP: timestamp_col, C.WEIGHT: weight_col,
            }, separator, has_header)  # fmt: skip
            ingest(src, tmp, chunk_rows, say)
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
    with commit_dir(out, check=partial(_check_target, overwrite=overwrite)) as tmp:
        parts = tmp / "_work" / "parts"
        parts.mkdir(parents=True)
        files = []
        for b, block in enumerate(
            synthetic_blocks(n_interactions, n_items, mean_length, seed, block_interactions)
        ):
            files.append(parts / f"part-{b:05d}.parquet")
            block.write_parquet(files[-1])
            say(f"generated block {b + 1}")
        src = synthetic_source(parts, tuple(files))
        ingest(src, tmp, chunk_rows, say)
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
    entries: dict[str, Entry | None] = {
        "indptr": save_array(tmp, "indptr", indptr),
        "items": save_array(tmp, "items", f.get_column(C.ITEM).to_numpy()),
        "positions": save_array(tmp, "positions", f.get_column(C.POSITION).to_numpy()),
        "weights": save_array(tmp, "weights", f.get_column(C.WEIGHT).to_numpy()),
    }
    if has_ts:
        entries["timestamps"] = save_array(tmp, "timestamps", ts.fill_null(NO_TIME).to_numpy())
    if len(names) > 1 or (names and event.null_count()):
        codes = event.replace_strict(names, list(range(len(names))), default=-1, return_dtype=pl.Int16)
        entries["events"] = save_array(tmp, "events", codes.to_numpy())
    tables = {
        "users": save_table(tmp, "users", pl.DataFrame({"external": data.users.external})),
        "items": save_table(tmp, "items", data.meta.select(list(META_SCHEMA))),
    }
    write_manifest(
        tmp, name=name, source="Interactions", n_users=data.n_users, n_items=data.n_items, n=n,
        arrays=entries, tables=tables, events=names, has_ts=has_ts,
    )  # fmt: skip


def _check_target(out: Path, overwrite: bool) -> None:
    """Replace only a prepared store or an empty folder, and only when asked to."""
    if not out.exists():
        return
    if not overwrite:
        raise ConfigError(f"{out} already exists; pass overwrite=True to replace it")
    if not out.is_dir() or not ((out / MANIFEST).is_file() or not any(out.iterdir())):
        raise ConfigError(f"{out} is not a prepared dataset or an empty folder; refusing to replace it")
