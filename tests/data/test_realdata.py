"""The readers on the real published files (PLAYNEXT_DATA_DIR; skipped cleanly when unset).

The expected counts are the ones the datasets document (u.info, README, Kaggle page, the
HetRec readme), so a reader that drops, duplicates or mis-splits a line fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from playnext.data.readers import load_dataset

pytestmark = pytest.mark.realdata

CASES: list[tuple[str, str, dict[str, Any], tuple[int, int, int]]] = [
    ("ml-100k", "ml-100k", {}, (943, 1_682, 100_000)),
    ("ml-1m", "ml-1m", {}, (6_040, 3_706, 1_000_209)),
    ("ml-latest-small", "ml-latest-small", {}, (610, 9_724, 100_836)),
    ("lastfm-2k", "lastfm-hetrec-2k", {}, (1_892, 17_632, 92_834)),
    ("lastfm-2k", "lastfm-hetrec-2k", {"events": "tags"}, (1_892, 12_523, 186_479)),
    ("steam-200k", "steam-200k", {}, (12_393, 5_155, 128_804)),
    ("steam-200k", "steam-200k", {"events": "all"}, (12_393, 5_155, 200_000)),
    ("userlines", "lastfm-hetrec-2k/s3rec/LastFM.txt", {}, (1_090, 3_646, 52_551)),
    ("seq", "ml-1m/interactions_all_users.txt", {}, (6_040, 3_706, 1_000_209)),
]


def located(data_dir: Path, folder: str) -> Path:
    path = data_dir / folder
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


@pytest.mark.parametrize(("name", "folder", "options", "expected"), CASES, ids=lambda c: str(c))
def test_counts(
    data_dir: Path, name: str, folder: str, options: dict[str, Any], expected: tuple[int, int, int]
) -> None:
    stats = load_dataset(name, located(data_dir, folder), **options).stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == expected


def test_ml1m_first_user_sequence(data_dir: Path) -> None:
    data = load_dataset("ml-1m", located(data_dir, "ml-1m"))
    first = data.users.to_internal(["1"])[0]
    assert data.items.to_external(data.sequences()[int(first)][:3]) == ["3186", "1270", "1721"]
    titles = dict(zip(data.meta["item_id"], data.meta["title"], strict=True))
    assert titles["3186"] == "Girl, Interrupted (1999)"


def test_ml100k_is_in_time_order_with_metadata(data_dir: Path) -> None:
    data = load_dataset("ml-100k", located(data_dir, "ml-100k"))
    f = data.frame
    same_user = np.diff(f.get_column("user").to_numpy()) == 0
    assert (np.diff(f.get_column("timestamp").to_numpy())[same_user] >= 0).all()
    toy = data.meta.filter(pl.col("item_id") == "1").row(0, named=True)
    assert toy["title"] == "Toy Story (1995)" and toy["year"] == 1995
    assert toy["genres"] == ["Animation", "Children's", "Comedy"]


def test_lastfm_plays_are_dated_where_a_tag_exists(data_dir: Path) -> None:
    data = load_dataset("lastfm-2k", located(data_dir, "lastfm-hetrec-2k"))
    ts = data.frame.get_column("timestamp")
    assert ts.null_count() == 0 and 0 < int((ts > 0).sum()) < len(ts)
    assert data.meta.filter(pl.col("genres").list.len() > 0).height > 10_000
