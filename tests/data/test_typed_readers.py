"""Typed events in the data layer: readers fill event types and values, refuse values outside a
type's range (file, line and field), and the synthetic world plants a meaning in its skips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from playnext.data.events import EVENT_TYPES, positive_mask, value_buckets
from playnext.data.readers import load_dataset
from playnext.data.split import leave_one_out
from playnext.data.synthetic import generate_world
from playnext.errors import ConfigError, DataError


def test_csv_reader_takes_event_and_value_columns(tmp_path: Path) -> None:
    f = tmp_path / "log.csv"
    f.write_text("uid,song,ts,what,how\nu1,a,1,play,3\nu1,b,2,skip,0.1\nu2,a,1,rating,4.5\nu2,c,2,like,\n")
    d = load_dataset("csv", f, user_col="uid", item_col="song", timestamp_col="ts",
                     event_col="what", value_col="how")  # fmt: skip
    assert d.frame.get_column("event").to_list() == ["play", "skip", "rating", "like"]
    assert d.frame.get_column("weight").to_list() == pytest.approx([3.0, 0.1, 4.5, 1.0])
    seqs = d.sequences()
    assert seqs.typed and seqs.event_names == ("like", "play", "rating", "skip")
    assert [seqs.event_names[c] for c in seqs.events] == ["play", "skip", "rating", "like"]
    split = leave_one_out(load_dataset("csv", f, user_col="uid", item_col="song", event_col="what"))
    assert split.train.event_names == ("like", "play", "rating", "skip")  # the whole log's types
    with pytest.raises(ConfigError, match="not both"):
        load_dataset("csv", f, user_col="uid", item_col="song", weight_col="how", value_col="how")


@pytest.mark.parametrize(
    ("row", "message"),
    [("u1,b,2,watch,1.7", "'watch' value must be between 0 and 1"), ("u1,b,2,play,-2", "at least 0"),
     ("u1,b,2,rating,7", "'rating' value must be between 0.5 and 5")],
)  # fmt: skip
def test_values_outside_a_types_range_name_file_line_and_field(
    tmp_path: Path, row: str, message: str
) -> None:
    f = tmp_path / "log.csv"
    f.write_text(f"user,item,ts,event,value\nu1,a,1,play,1\n{row}\n")
    with pytest.raises(DataError, match=message) as e:
        load_dataset("csv", f, timestamp_col="ts", event_col="event", value_col="value")
    assert (e.value.path, e.value.line, e.value.field) == (str(f), 3, "value")


def test_parquet_reader_checks_values_too(tmp_path: Path) -> None:
    f = tmp_path / "log.parquet"
    pl.DataFrame(
        {"user": ["u1", "u1"], "item": ["a", "b"], "e": ["skip", "skip"], "v": [0.2, 1.5]}
    ).write_parquet(f)
    with pytest.raises(DataError, match="'skip' value") as e:
        load_dataset("parquet", f, event_col="e", value_col="v")
    assert (e.value.line, e.value.field) == (2, "v")


def test_movielens_ratings_are_rating_events(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t10\t5\t100\n1\t11\t2\t200\n2\t10\t4\t150\n")
    d = load_dataset("ml-100k", tmp_path)
    assert set(d.frame.get_column("event").to_list()) == {"rating"}
    assert sorted(d.frame.get_column("weight").to_list()) == [2.0, 4.0, 5.0]
    (tmp_path / "u.data").write_text("1\t10\t5\t100\n1\t11\t7\t200\n")
    with pytest.raises(DataError, match="rating") as e:
        load_dataset("ml-100k", tmp_path)
    assert (e.value.path, e.value.line, e.value.field) == (str(tmp_path / "u.data"), 2, "rating")


def test_steam_purchases_and_hours(tmp_path: Path) -> None:
    f = tmp_path / "steam-200k.csv"
    f.write_text('1,"Dota 2",purchase,1.0,0\n1,"Dota 2",play,12.5,0\n2,"Portal",purchase,1.0,0\n')
    d = load_dataset("steam-200k", f, events="all")
    assert d.frame.get_column("event").to_list() == ["purchase", "play", "purchase"]
    assert d.frame.get_column("weight").to_list() == [1.0, 12.5, 1.0]
    f.write_text('1,"Dota 2",purchase,1.0,0\n1,"Dota 2",play,-3,0\n')
    with pytest.raises(DataError, match="'play' value must be at least 0") as e:
        load_dataset("steam-200k", f)
    assert (e.value.line, e.value.field) == (2, "value")


def test_lastfm_play_counts(tmp_path: Path) -> None:
    (tmp_path / "user_artists.dat").write_text("userID\tartistID\tweight\n2\t51\t13883\n2\t52\t-1\n")
    with pytest.raises(DataError, match="'play' value") as e:
        load_dataset("lastfm-2k", tmp_path)
    assert (e.value.line, e.value.field) == (3, "weight")
    (tmp_path / "user_artists.dat").write_text("userID\tartistID\tweight\n2\t51\t13883\n2\t52\t5\n")
    d = load_dataset("lastfm-2k", tmp_path)
    assert d.frame.get_column("event").to_list() == ["play", "play"]


def test_positive_events_and_value_buckets() -> None:
    names = ("rating", "skip", "watch", "play", "custom")
    codes = np.array([0, 0, 1, 2, 2, 3, 4, -1])
    values = np.array([2.0, 4.0, 0.9, 0.3, 0.95, 500.0, 3.0, np.nan], dtype=np.float32)
    assert positive_mask(codes, values, names).tolist() == [False, True, False, False, True, True, True, True]
    b = value_buckets(codes, values, names, 4)
    assert b.tolist() == [1, 3, 3, 1, 3, 3, 2, 0]  # play 500 → log2 bucket, capped
    assert {"play", "watch", "rating", "purchase", "like", "skip"} <= set(EVENT_TYPES)


def test_the_default_world_is_untyped_and_the_typed_world_keeps_its_order() -> None:
    plain = generate_world(n_users=80, n_items=200, seed=1)
    typed = generate_world(n_users=80, n_items=200, seed=1, typed_events=True)
    assert plain.frame.get_column("event").null_count() == len(plain)
    kept = typed.frame.filter(pl.col("event") != "skip")
    # without its skips the typed log is the untyped one, event for event
    assert kept.get_column("item").to_list() == [
        typed.items.lookup[plain.items.external[i]] for i in plain.frame.get_column("item").to_list()
    ]


def test_a_skip_is_never_followed_by_its_series() -> None:
    """The planted meaning: a skipped item's sequel never comes next, and no user ends on a skip."""
    d = generate_world(n_users=300, n_items=400, seed=0, typed_events=True)
    f = d.frame.with_columns(pl.col("item").shift(-1).over("user").alias("next"))
    ids = d.items.external
    skips = f.filter(pl.col("event") == "skip")
    assert skips.height > 0.1 * len(d) and skips.get_column("next").null_count() == 0
    series = [ids[i].rsplit("-", 1)[0] for i in skips.get_column("item")]
    nxt = [ids[i].rsplit("-", 1)[0] for i in skips.get_column("next")]
    assert not any(a == b for a, b in zip(series, nxt, strict=True))
    vals = skips.get_column("weight").to_numpy()
    assert ((vals >= 0) & (vals < 0.15)).all()
