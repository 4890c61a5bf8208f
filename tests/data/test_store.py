"""The prepared on-disk dataset: the readers' answer, memory-mapped, and never half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from playnext.data.interactions import Interactions
from playnext.data.readers import load_dataset
from playnext.data.store import open_store, prepare, prepare_synthetic
from playnext.data.synthetic import generate_world
from playnext.errors import ConfigError, DataError


def ml_folder(root: Path, n: int = 3000, seed: int = 0) -> Path:
    """A MovieLens ratings.csv (+ movies.csv): users out of order, many same-second ties."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "userId": rng.integers(1, 200, n),
            "movieId": rng.integers(1, 400, n),
            "rating": rng.integers(1, 11, n) / 2,
            "timestamp": rng.integers(0, 40, n),
        }
    ).write_csv(root / "ratings.csv")
    (root / "movies.csv").write_text(
        'movieId,title,genres\n1,"Heat (1995)",Action|Crime\n2,"Sabrina, The (1954)",(no genres listed)\n'
    )
    return root


def same(got: Interactions, ref: Interactions) -> None:
    assert got.frame.equals(ref.frame)
    assert got.users == ref.users and got.items == ref.items
    assert got.meta.equals(ref.meta)


def partials(root: Path) -> list[Path]:
    return sorted(root.glob(".*.partial-*"))


def test_ml_ratings_csv_streams_to_what_the_reader_returns(tmp_path: Path) -> None:
    folder = ml_folder(tmp_path / "ml-32m")
    store = prepare(folder / "ratings.csv", tmp_path / "store", chunk_rows=400)  # ~8 user ranges
    assert (store.name, len(store), store.n_users) == ("ml-32m", 3000, 199)
    same(store.to_interactions(), load_dataset("ml-32m", folder))
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest["events"] == ["rating"] and manifest["has_timestamps"]
    assert {e["file"] for e in manifest["arrays"].values()} == {
        "indptr.npy", "items.npy", "timestamps.npy", "positions.npy", "weights.npy"
    }  # fmt: skip
    assert not partials(tmp_path) and not (tmp_path / "store" / "_work").exists()


def test_csv_iso_times_seq_lines_and_parquet_match_their_readers(tmp_path: Path) -> None:
    csv = tmp_path / "log.csv"
    csv.write_text(
        "who,what,when,w\n"
        "a,x,2020-01-02T00:00:00,2\n"
        "b,y,1577836800,\n"  # unix seconds and ISO in one column; a blank weight is 1
        "a,y,2020-01-01,1.5\n"
        "b,x,,3\n"  # no time: after the timed events
        "a,z,2020-01-01,1\n"  # a tie: file order
    )
    opts: dict[str, Any] = {"user_col": "who", "item_col": "what", "timestamp_col": "when", "weight_col": "w"}
    store = prepare(csv, tmp_path / "s1", **opts)
    same(store.to_interactions(), load_dataset("csv", csv, **opts))
    assert store.timestamps() is not None

    seq = tmp_path / "seq.txt"
    seq.write_text("1 10\n2 11\n\n1  12\n1\t10\n")
    same(prepare(seq, tmp_path / "s2").to_interactions(), load_dataset("seq", seq))
    assert open_store(tmp_path / "s2").timestamps() is None

    pq = tmp_path / "log.parquet"
    pl.DataFrame({"user": [3, 1, 3], "item": ["b", "a", "a"], "timestamp": [5, 1, 2]}).write_parquet(pq)
    same(prepare(pq, tmp_path / "s3").to_interactions(), load_dataset("parquet", pq))


def test_interactions_round_trip_with_events_and_metadata(tmp_path: Path) -> None:
    world = generate_world(150, 120, seed=3)
    same(prepare(world, tmp_path / "w").to_interactions(), world)
    raw = pl.DataFrame({
        "user": ["a", "a", "b", "b"], "item": ["x", "y", "x", "z"],
        "timestamp": [2, 1, None, 4], "event": ["play", None, "buy", "play"],
    })  # fmt: skip
    mixed = Interactions.from_frame(raw)
    same(prepare(mixed, tmp_path / "m").to_interactions(), mixed)


def test_sequences_are_memory_maps_in_stable_time_order(tmp_path: Path) -> None:
    folder = ml_folder(tmp_path / "ml", n=2000, seed=1)
    store = prepare(folder, tmp_path / "store", chunk_rows=300)
    seqs = store.sequences()
    assert isinstance(seqs.items, np.memmap) and isinstance(seqs.indptr, np.memmap)
    assert not seqs.items.flags.writeable
    ref = load_dataset("ml-32m", folder).sequences()
    assert np.array_equal(seqs.indptr, ref.indptr) and np.array_equal(seqs.items, ref.items)
    assert np.array_equal(store.item_counts(), np.bincount(ref.items, minlength=store.n_items))
    ts = np.asarray(store.timestamps())
    rows = seqs.row_ids()
    assert np.all((np.diff(ts) >= 0) | (np.diff(rows) > 0))  # time order within every user
    with pytest.raises(ConfigError, match="max_interactions"):
        store.to_interactions(max_interactions=100)


def test_prepare_synthetic_generates_blocks_of_users(tmp_path: Path) -> None:
    store = prepare_synthetic(
        tmp_path / "syn", 20_000, n_items=600, block_interactions=5_000, chunk_rows=3_000
    )
    assert len(store) == 20_000 and store.n_users == len(store.users)  # user ids unique across blocks
    data = store.to_interactions()
    assert set(data.meta.get_column("kind").unique().to_list()) <= {"movie", "music", "game"}
    ts = np.asarray(store.timestamps())
    assert np.all((np.diff(ts) >= 0) | (np.diff(store.sequences().row_ids()) > 0))


@pytest.mark.parametrize(
    ("ratings", "line", "field"),
    [
        ("userId,movieId,rating,timestamp\n1,1,4.0,9\n1,2,four,9\n", 3, "rating"),
        ("userId,movieId,rating,timestamp\n1,1,4.0\n", 2, "timestamp"),
        ("userId,movieId,rating,timestamp\n1,1,4.0,9\n2,x,1,1\n", 3, "movieId"),
        ("userId;movieId;rating;timestamp\n1;1;4.0;9\n", 1, None),
        ("userId,movieId,rating,timestamp\n", None, None),
    ],
)
def test_bad_rows_fail_as_in_the_reader_and_leave_nothing(
    tmp_path: Path, ratings: str, line: int | None, field: str | None
) -> None:
    (tmp_path / "ratings.csv").write_text(ratings)
    with pytest.raises(DataError) as ref:
        load_dataset("ml-32m", tmp_path)
    with pytest.raises(DataError) as got:
        prepare(tmp_path / "ratings.csv", tmp_path / "out")
    assert str(got.value) == str(ref.value)
    assert (got.value.line, got.value.field) == (line, field)
    assert not (tmp_path / "out").exists() and not partials(tmp_path)


def test_undecodable_bytes_and_bad_iso_times_are_data_errors(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_bytes(b"userId,movieId,rating,timestamp\n1,1,4.0,9\n1,\xff,4.0,9\n")
    with pytest.raises(DataError, match="not valid UTF-8") as e:
        prepare(tmp_path / "ratings.csv", tmp_path / "out")
    assert e.value.line == 3
    csv = tmp_path / "t.csv"
    csv.write_text("user,item,timestamp\na,x,2020-01-01\nb,y,yesterday\n")
    with pytest.raises(DataError, match="got 'yesterday'") as e:
        prepare(csv, tmp_path / "out")
    assert (e.value.line, e.value.field) == (3, "timestamp")
    assert not partials(tmp_path)


def test_open_store_refuses_incomplete_or_damaged_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a folder"):
        open_store(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"manifest\.json is missing"):
        open_store(tmp_path / "empty")
    good = prepare(ml_folder(tmp_path / "ml", n=500), tmp_path / "store").path
    manifest = json.loads((good / "manifest.json").read_text())

    (good / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="unreadable manifest"):
        open_store(good)
    (good / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(DataError, match="version 99"):
        open_store(good)
    (good / "manifest.json").write_text(json.dumps(manifest))

    items = good / "items.npy"
    blob = items.read_bytes()
    items.write_bytes(blob[:-4])  # truncated
    with pytest.raises(DataError, match="truncated") as e:
        open_store(good)
    assert e.value.path == str(items)
    items.write_bytes(blob[:-4] + bytes(4))  # same size, different content
    open_store(good)  # sizes and headers still agree ...
    with pytest.raises(DataError, match="checksum"):
        open_store(good, verify=True)  # ... the sha256 does not
    items.unlink()
    with pytest.raises(DataError, match="missing file"):
        open_store(good)


def test_existing_output_is_replaced_only_when_asked_and_only_if_a_store(tmp_path: Path) -> None:
    folder = ml_folder(tmp_path / "ml", n=300)
    prepare(folder, tmp_path / "store")
    with pytest.raises(ConfigError, match="overwrite=True"):
        prepare(folder, tmp_path / "store")
    assert len(prepare(folder, tmp_path / "store", overwrite=True)) == 300
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("…")
    with pytest.raises(ConfigError, match="refusing"):
        prepare(folder, precious, overwrite=True)
    assert (precious / "thesis.tex").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml", "precious", "store"]


_CHILD = """
import sys, time
from playnext.data.store import prepare

def progress(msg):
    print(msg, flush=True)
    if msg.startswith(sys.argv[3]):
        time.sleep(120)  # killed here

prepare(sys.argv[1], sys.argv[2], chunk_rows=2_000, progress=progress)
"""


@pytest.mark.parametrize("stage", ["coding", "sorted users", "tables"])
def test_a_killed_prepare_never_leaves_a_loadable_dataset(tmp_path: Path, stage: str) -> None:
    folder = ml_folder(tmp_path / "ml", n=10_000)
    out = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    cmd = [sys.executable, "-c", textwrap.dedent(_CHILD), str(folder), str(out), stage]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None
        for msg in proc.stdout:
            if msg.startswith(stage):
                break
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not out.exists()
    with pytest.raises(DataError):
        open_store(out)
    (partial,) = partials(tmp_path)  # the killed run's scratch folder: no manifest, refused
    assert not (partial / "manifest.json").exists()
    with pytest.raises(DataError, match="manifest"):
        open_store(partial)
    store = prepare(folder, out)  # a rerun succeeds and clears the leftovers
    same(store.to_interactions(), load_dataset("ml-32m", folder))
    assert not partials(tmp_path)
