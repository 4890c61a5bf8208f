"""Every reader on tiny files written in the original formats, good and malformed.

Malformed input must raise DataError naming the file, the 1-based line and the field. It must
never surface as a polars, value or decoding error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from playnext.data.interactions import Interactions
from playnext.data.readers import DATASETS, load_dataset
from playnext.errors import ConfigError, DataError


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def seqs(data: Interactions) -> dict[str, list[str]]:
    """Every user's items (external ids) in the stable time order."""
    h = data.sequences()
    return {data.users.external[u]: data.items.to_external(h[u]) for u in range(data.n_users)}


def raises(fn: Callable[[], object], *, file: str, line: int | None, field: str | None) -> DataError:
    with pytest.raises(DataError) as info:
        fn()
    e = info.value
    assert e.path is not None and Path(e.path).name == file, str(e)
    assert e.line == line, str(e)
    assert e.field == field, str(e)
    return e


def ts(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp())


# ---- MovieLens 100K -----------------------------------------------------------------------------
U_GENRE = "unknown|0\nAction|1\nComedy|2\n\n"


def ml100k(root: Path, data: str = "1\t10\t4\t300\n2\t10\t5\t100\n1\t20\t3\t200\n1\t30\t1\t200\n") -> Path:
    folder = root / "ml-100k"
    write(folder / "u.data", data)
    write(folder / "u.genre", U_GENRE)
    items = (
        "10|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n"
        "20|Amélie (2001)|01-Jan-2001||http://x|0|1|1\n"
        "30|unknown|||http://x|1|0|0\n"
    )
    write(folder / "u.item", items, encoding="latin-1")
    return folder


def test_ml100k_reads_ratings_items_and_orders_by_time_then_file(tmp_path: Path) -> None:
    data = load_dataset("ml-100k", ml100k(tmp_path))
    s = data.stats()
    assert (s["users"], s["items"], s["interactions"]) == (2, 3, 4)
    # user 1: 30/20 tie at t=200 keeps file order (20 before 30), then 10 at t=300
    assert seqs(data) == {"1": ["20", "30", "10"], "2": ["10"]}
    meta = {r["item_id"]: r for r in data.meta.iter_rows(named=True)}
    assert meta["20"]["title"] == "Amélie (2001)"  # latin-1 decoded
    assert meta["20"]["genres"] == ["Action", "Comedy"] and meta["20"]["year"] == 2001
    assert meta["30"]["genres"] == ["unknown"] and meta["30"]["year"] is None
    assert meta["10"]["kind"] == "movie"
    assert data.frame.get_column("weight").to_list()[:1] == [3.0]


def test_ml100k_accepts_the_parent_folder_and_the_file_itself(tmp_path: Path) -> None:
    folder = ml100k(tmp_path)
    assert len(load_dataset("ml-100k", tmp_path)) == 4
    assert len(load_dataset("ml-100k", folder / "u.data")) == 4


def test_crlf_bom_and_blank_lines_are_tolerated(tmp_path: Path) -> None:
    folder = ml100k(tmp_path, "\ufeff1\t10\t4\t300\r\n\r\n2\t10\t5\t100\r\n")
    assert len(load_dataset("ml-100k", folder)) == 2


@pytest.mark.parametrize(
    ("data", "line", "field", "message"),
    [
        ("1\t10\t4\t300\n2\t10\t5\tabc\n", 2, "timestamp", "expected an integer, got 'abc'"),
        ("1\t10\t4\t300\n\n1\tx\t4\t300\n", 3, "item id", "expected an integer, got 'x'"),
        ("1\t10\t4.5.1\t300\n", 1, "rating", "expected a finite number"),
        ("1\t10\tnan\t300\n", 1, "rating", "expected a finite number"),
        ("1\t10\t4\t300\n1\t20\t4\n", 2, "timestamp", "expected 4 fields separated by tabs, found 3"),
        ("1\t10\t4\t300\t9\n", 1, None, "found 5"),
        ("1,10,4,300\n", 1, "item id", "wrong"),  # wrong separator: one field per line
        ("1\t\t4\t300\n", 1, "item id", "missing value"),
    ],
)
def test_ml100k_malformed_lines_name_file_line_and_field(
    tmp_path: Path, data: str, line: int, field: str | None, message: str
) -> None:
    folder = ml100k(tmp_path, data)
    e = raises(lambda: load_dataset("ml-100k", folder), file="u.data", line=line, field=field)
    if message != "wrong":
        assert message in str(e)
    else:
        assert "expected 4 fields separated by tabs, found 1" in str(e)


def test_bad_encoding_names_line_and_field(tmp_path: Path) -> None:
    folder = ml100k(tmp_path)
    (folder / "u.data").write_bytes(b"1\t10\t4\t300\n1\t2\xff0\t4\t300\n")
    e = raises(lambda: load_dataset("ml-100k", folder), file="u.data", line=2, field="item id")
    assert "UTF-8" in str(e)


def test_a_control_byte_that_breaks_line_splitting_is_located(tmp_path: Path) -> None:
    folder = ml100k(tmp_path, "1\t10\t4\t300\n1\t20\x1f\t4\t300\n")
    e = raises(lambda: load_dataset("ml-100k", folder), file="u.data", line=2, field=None)
    assert "control character" in str(e)


def test_empty_file_missing_file_and_missing_folder(tmp_path: Path) -> None:
    folder = ml100k(tmp_path, "")
    e = raises(lambda: load_dataset("ml-100k", folder), file="u.data", line=None, field=None)
    assert "empty" in str(e)
    (folder / "u.data").unlink()
    raises(lambda: load_dataset("ml-100k", folder), file="u.data", line=None, field=None)
    e = raises(lambda: load_dataset("ml-100k", tmp_path / "nope"), file="nope", line=None, field=None)
    assert "no such" in str(e)


def test_blank_only_file_has_no_data_rows(tmp_path: Path) -> None:
    folder = ml100k(tmp_path, "\n\n")
    e = raises(lambda: load_dataset("ml-100k", folder), file="u.data", line=None, field=None)
    assert "no data rows" in str(e)


def test_malformed_metadata_is_reported_too(tmp_path: Path) -> None:
    folder = ml100k(tmp_path)
    write(folder / "u.item", "10|Toy Story (1995)|01-Jan-1995||http://x|0|0|7\n")
    raises(lambda: load_dataset("ml-100k", folder), file="u.item", line=1, field="Comedy")


# ---- MovieLens 1M / 10M (.dat) ------------------------------------------------------------------------
MOVIES_DAT = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Café (2001)::Drama\n3::Heat (1995)::Action\n"
)


def test_ml1m_prefers_a_complete_ratings_dat(tmp_path: Path) -> None:
    folder = tmp_path / "ml-1m"
    write(folder / "ratings.dat", "1::2::5::978300760\n1::1::3::978300700\n2::3::4::978300000\n")
    write(folder / "interactions_all_users.txt", "9 9\n")
    write(folder / "ratings_users_0001-2999.dat", "7::7::1::1\n")  # partial: never used
    write(folder / "movies.dat", MOVIES_DAT, encoding="latin-1")
    data = load_dataset("ml-1m", folder)
    assert seqs(data) == {"1": ["1", "2"], "2": ["3"]}
    assert data.stats()["has_timestamps"]
    titles = dict(zip(data.meta["item_id"], data.meta["title"], strict=True))
    assert titles["2"] == "Café (2001)"


def test_ml1m_falls_back_to_the_time_ordered_pairs_file(tmp_path: Path) -> None:
    folder = tmp_path / "ml-1m"
    write(folder / "interactions_all_users.txt", "1 3186\n1 1270\n1\t1721\n2 1\n")
    # a partial ratings file types the pairs it rates; the rest stay untyped, in the same order
    write(folder / "ratings_users_0001-2999.dat", "1::1270::4::978300760\n1::9::2::978300761\n")
    write(folder / "movies.dat", "3186::Girl, Interrupted (1999)::Drama\n", encoding="latin-1")
    data = load_dataset("ml-1m", folder)
    assert seqs(data) == {"1": ["3186", "1270", "1721"], "2": ["1"]}
    assert not data.stats()["has_timestamps"]
    h = data.sequences()
    assert data.event_names == ("rating",)
    assert h.events is not None and h.values is not None
    assert h.events.tolist() == [-1, 0, -1, -1] and h.values[1] == 4.0
    meta = data.meta.row(0, named=True)
    assert (meta["title"], meta["genres"], meta["year"]) == ("Girl, Interrupted (1999)", ["Drama"], 1999)


def test_ml1m_without_any_ratings_file(tmp_path: Path) -> None:
    write(tmp_path / "ml-1m" / "movies.dat", MOVIES_DAT)
    e = raises(lambda: load_dataset("ml-1m", tmp_path / "ml-1m"), file="ratings.dat", line=None, field=None)
    assert "not found" in str(e)


def test_ratings_dat_bad_timestamp_message(tmp_path: Path) -> None:
    lines = "".join(f"1::{i}::4::97830{i:04d}\n" for i in range(16)) + "1::99::4::abc\n"
    write(tmp_path / "ml-1m" / "ratings.dat", lines)
    e = raises(
        lambda: load_dataset("ml-1m", tmp_path / "ml-1m"), file="ratings.dat", line=17, field="Timestamp"
    )
    assert str(e).endswith("ratings.dat, line 17, field 'Timestamp': expected an integer, got 'abc'")


def test_ratings_dat_missing_field_and_wrong_separator(tmp_path: Path) -> None:
    write(tmp_path / "a" / "ratings.dat", "1::2::5::978300760\n1::2::5\n")
    e = raises(lambda: load_dataset("ml-1m", tmp_path / "a"), file="ratings.dat", line=2, field="Timestamp")
    assert "expected 4 fields separated by '::', found 3" in str(e)
    write(tmp_path / "b" / "ratings.dat", "1:2:5:978300760\n")
    raises(lambda: load_dataset("ml-1m", tmp_path / "b"), file="ratings.dat", line=1, field="MovieID")


def test_ml10m_finds_the_nested_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ml-10M100K"
    write(folder / "ratings.dat", "1::122::5::838985046\n1::185::4.5::838983525\n")
    write(folder / "movies.dat", "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action\n")
    data = load_dataset("ml-10m", tmp_path)
    assert seqs(data) == {"1": ["185", "122"]}
    assert sorted(data.frame.get_column("weight").to_list()) == [4.5, 5.0]


# ---- MovieLens CSV releases (20M, 25M, 32M, latest) -----------------------------------------------------
RATINGS_CSV = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.0,964981247\n2,1,2.5,964982000\n"
MOVIES_CSV = (
    "movieId,title,genres\n"
    '1,"American President, The (1995)",Comedy|Drama|Romance\n'
    "3,Babylon 5,(no genres listed)\n"
)


@pytest.mark.parametrize("name", ["ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "ml-latest"])
def test_ml_csv_releases(tmp_path: Path, name: str) -> None:
    write(tmp_path / "ratings.csv", RATINGS_CSV)
    write(tmp_path / "movies.csv", MOVIES_CSV)
    data = load_dataset(name, tmp_path)
    assert data.name == name
    assert seqs(data) == {"1": ["3", "1"], "2": ["1"]}
    meta = {r["item_id"]: r for r in data.meta.iter_rows(named=True)}
    assert meta["1"]["title"] == "American President, The (1995)" and meta["1"]["year"] == 1995
    assert meta["1"]["genres"] == ["Comedy", "Drama", "Romance"]
    assert meta["3"]["genres"] == [] and meta["3"]["year"] is None


@pytest.mark.parametrize(
    ("ratings", "line", "field", "message"),
    [
        ("userId;movieId;rating;timestamp\n1;1;4.0;9\n", 1, None, "wrong separator"),
        ("userId,movieId,rating,timestamp\n1,1,4.0,9\n1,2,four,9\n", 3, "rating", "got 'four'"),
        ("userId,movieId,rating,timestamp\n1,1,4.0,9,7\n", 2, None, "found 5"),
        ("userId,movieId,rating,timestamp\n1,1,4.0\n", 2, "timestamp", "found 3"),
        ("userId,movieId,rating,timestamp\n", None, None, "no data rows"),
    ],
)
def test_ml_csv_malformed(
    tmp_path: Path, ratings: str, line: int | None, field: str | None, message: str
) -> None:
    write(tmp_path / "ratings.csv", ratings)
    e = raises(lambda: load_dataset("ml-20m", tmp_path), file="ratings.csv", line=line, field=field)
    assert message in str(e)


# ---- Last.fm HetRec 2011 ----------------------------------------------------------------------------------
def lastfm(root: Path) -> Path:
    write(root / "user_artists.dat", "userID\tartistID\tweight\n2\t51\t100\n2\t52\t50\n2\t53\t7\n3\t51\t1\n")
    write(
        root / "artists.dat",
        'id\tname\turl\tpictureURL\n51\tDuran Duran\thttp://a\thttp://p\n52\tMorcheeba\thttp://b\t\n53\t"Björk"\tu\tp\n',
        encoding="latin-1",
    )
    write(root / "tags.dat", "tagID\ttagValue\n1\tpop\n2\t80s\n3\tnew wave\n4\tchill\n")
    write(
        root / "user_taggedartists.dat",
        "userID\tartistID\ttagID\tday\tmonth\tyear\n"
        "2\t52\t4\t1\t4\t2009\n"
        "2\t51\t1\t1\t5\t2009\n"
        "2\t51\t2\t1\t3\t2009\n"  # earlier tag of the same pair: it dates the pair
        "3\t51\t2\t1\t1\t2010\n"
        "3\t51\t3\t1\t1\t2010\n"
        "3\t99\t1\t1\t1\t2010\n",  # tagged but never played: not a play
    )
    return root


def test_lastfm_plays_are_dated_by_the_first_tag(tmp_path: Path) -> None:
    data = load_dataset("lastfm-2k", lastfm(tmp_path))
    s = data.stats()
    assert (s["users"], s["items"], s["interactions"]) == (2, 3, 4)
    # 53 has no tag: timestamp 0 puts it first; then 51 (2009-03-01) before 52 (2009-04-01)
    assert seqs(data) == {"2": ["53", "51", "52"], "3": ["51"]}
    f = data.frame.filter(pl.col("user") == 0).sort("timestamp")
    assert f.get_column("timestamp").to_list() == [0, ts("2009-03-01"), ts("2009-04-01")]
    assert f.get_column("weight").to_list() == [7.0, 100.0, 50.0]
    meta = {r["item_id"]: r for r in data.meta.iter_rows(named=True)}
    assert meta["51"]["title"] == "Duran Duran" and meta["51"]["kind"] == "music"
    assert meta["51"]["genres"] == ["80s", "pop", "new wave"]  # 80s used twice, then by tag id
    assert meta["53"]["title"] == '"Björk"' and meta["53"]["genres"] == []


def test_lastfm_tag_events(tmp_path: Path) -> None:
    data = load_dataset("lastfm-2k", lastfm(tmp_path), events="tags")
    assert len(data) == 6
    assert seqs(data)["2"] == ["51", "52", "51"]
    assert set(data.frame.get_column("event").to_list()) == {"tag"}


def test_lastfm_tag_days_keep_one_event_per_day_and_the_returns(tmp_path: Path) -> None:
    """User 3's two tags of 51 on one day are one visit; user 2 came back to 51 two months later."""
    data = load_dataset("lastfm-2k", lastfm(tmp_path), events="tag-days")
    assert seqs(data) == {"2": ["51", "52", "51"], "3": ["51", "99"]}


def test_lastfm_without_tag_file_has_undated_plays_in_file_order(tmp_path: Path) -> None:
    root = lastfm(tmp_path)
    (root / "user_taggedartists.dat").unlink()
    data = load_dataset("lastfm-2k", root)
    assert seqs(data)["2"] == ["51", "52", "53"]


def test_lastfm_malformed(tmp_path: Path) -> None:
    root = lastfm(tmp_path)
    write(
        root / "user_taggedartists.dat", "userID\tartistID\ttagID\tday\tmonth\tyear\n2\t52\t4\t31\t2\t2009\n"
    )
    e = raises(lambda: load_dataset("lastfm-2k", root), file="user_taggedartists.dat", line=2, field="day")
    assert "not a valid date" in str(e)
    (root / "user_taggedartists.dat").unlink()
    write(root / "user_artists.dat", "userID artistID weight\n2 51 100\n")
    e = raises(lambda: load_dataset("lastfm-2k", root), file="user_artists.dat", line=1, field=None)
    assert "expected the header" in str(e)
    with pytest.raises(ConfigError):
        load_dataset("lastfm-2k", root, events="likes")


# ---- Steam 200K --------------------------------------------------------------------------------------------
STEAM = (
    '151603712,"The Elder Scrolls V Skyrim",purchase,1.0,0\n'
    '151603712,"The Elder Scrolls V Skyrim",play,273.0,0\n'
    '151603712,"Fallout 4",purchase,1.0,0\n'
    '187131847,"Dota 2",play,2.3,0\n'
    '151603712,"Spore, Galactic",purchase,1.0,0\n'
    '187131847,"Dota 2",play,0.7,0\n'
)


def test_steam_one_interaction_per_pair(tmp_path: Path) -> None:
    file = write(tmp_path / "steam-200k.csv", STEAM)
    data = load_dataset("steam-200k", file)
    assert load_dataset("steam-200k", tmp_path).stats()["interactions"] == 4
    assert seqs(data) == {
        "151603712": ["The Elder Scrolls V Skyrim", "Fallout 4", "Spore, Galactic"],
        "187131847": ["Dota 2"],
    }
    rows = {
        (r[0], r[1]): (r[2], r[3]) for r in data.frame.select("user", "item", "weight", "event").iter_rows()
    }
    assert rows[(0, 0)] == (273.0, "play") and rows[(0, 1)] == (0.0, "purchase")
    assert rows[(1, 2)] == pytest.approx((3.0, "play"))  # two play rows: hours add up
    assert data.meta.get_column("kind").to_list() == ["game"] * 4


def test_steam_all_rows(tmp_path: Path) -> None:
    data = load_dataset("steam-200k", write(tmp_path / "steam-200k.csv", STEAM), events="all")
    assert len(data) == 6
    assert data.stats()["events"] == {"purchase": 3, "play": 3}


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ('1,"Dota 2",played,1.0,0', "behavior", "expected 'purchase' or 'play'"),
        ('1,"Dota 2",play,lots,0', "value", "expected a finite number, got 'lots'"),
        ('1;"Dota 2";play;1.0;0', "game_title", "expected 5 fields separated by commas, found 1"),
        ('x,"Dota 2",play,1.0,0', "user_id", "expected an integer"),
    ],
)
def test_steam_malformed(tmp_path: Path, row: str, field: str, message: str) -> None:
    file = write(tmp_path / "steam-200k.csv", STEAM + row + "\n")
    e = raises(lambda: load_dataset("steam-200k", file), file="steam-200k.csv", line=7, field=field)
    assert message in str(e)


def test_steam_without_path_explains_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"--path"):
        load_dataset("steam-200k", cache_dir=tmp_path)


# ---- sequence formats -----------------------------------------------------------------------------------
def test_seq_keeps_file_order(tmp_path: Path) -> None:
    file = write(tmp_path / "ml-1m.txt", "1 5\n1  3\n2\t7\n1 4 \n")
    data = load_dataset("seq", file)
    assert seqs(data) == {"1": ["5", "3", "4"], "2": ["7"]}


def test_seq_malformed(tmp_path: Path) -> None:
    file = write(tmp_path / "s.txt", "1 5\n1,3\n")
    e = raises(lambda: load_dataset("seq", file), file="s.txt", line=2, field="item")
    assert "expected 2 fields separated by spaces or tabs, found 1" in str(e)
    file = write(tmp_path / "t.txt", "1 5 9\n")
    raises(lambda: load_dataset("seq", file), file="t.txt", line=1, field=None)


def test_userlines(tmp_path: Path) -> None:
    file = write(tmp_path / "LastFM.txt", "1 1 2 3\n2 9 1\n\n3 4\n")
    data = load_dataset("userlines", file, kind="music")
    assert seqs(data) == {"1": ["1", "2", "3"], "2": ["9", "1"], "3": ["4"]}
    assert data.meta.get_column("kind").to_list() == ["music"] * 5
    write(tmp_path / "bad.txt", "1 1 2\n2\n")
    raises(lambda: load_dataset("userlines", tmp_path / "bad.txt"), file="bad.txt", line=2, field="item")


# ---- generic CSV and Parquet -----------------------------------------------------------------------------
def test_csv_with_header_iso_times_weights_and_titles(tmp_path: Path) -> None:
    file = write(
        tmp_path / "log.csv",
        "uid,song,when,plays,title\n"
        'a,s1,2024-01-02T00:00:00,3,"Song, One"\n'
        "a,s2,2024-01-01T00:00:00,,Two\n"
        "b,s1,2024-01-01,1,Song One\n",
    )
    data = load_dataset(
        "csv",
        file,
        user_col="uid",
        item_col="song",
        timestamp_col="when",
        weight_col="plays",
        title_col="title",
    )
    assert seqs(data) == {"a": ["s2", "s1"], "b": ["s1"]}
    assert data.frame.get_column("timestamp").to_list() == [
        ts("2024-01-01"),
        ts("2024-01-02"),
        ts("2024-01-01"),
    ]
    assert sorted(data.frame.get_column("weight").to_list()) == [1.0, 1.0, 3.0]  # blank weight → 1
    assert dict(zip(data.meta["item_id"], data.meta["title"], strict=True)) == {
        "s1": "Song, One",
        "s2": "Two",
    }


def test_csv_default_names_indices_and_separators(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "user,item,timestamp\nu,i,20\nu,j,10\n")
    assert seqs(load_dataset("csv", tmp_path / "a.csv")) == {"u": ["j", "i"]}
    write(tmp_path / "b.tsv", "x\tu\ti\t5\nx\tu\tj\t1\n")
    data = load_dataset("csv", tmp_path / "b.tsv", separator="\\t", has_header=False, user_col=1, item_col=2)
    assert seqs(data) == {"u": ["i", "j"]}
    data = load_dataset(
        "csv", tmp_path / "b.tsv", separator="tab", has_header=False, user_col=1, item_col=2, timestamp_col=3
    )
    assert seqs(data) == {"u": ["j", "i"]}
    write(tmp_path / "c.dat", "1::7::5\n1::8::3\n")
    data = load_dataset("csv", tmp_path / "c.dat", separator="::", has_header=False, timestamp_col=2)
    assert seqs(data) == {"1": ["8", "7"]}


def test_csv_malformed(tmp_path: Path) -> None:
    file = write(tmp_path / "log.csv", "uid,song,when\na,s1,2024-01-02\na,s2,yesterday\n")
    e = raises(lambda: load_dataset("csv", file, user_col="user_id"), file="log.csv", line=1, field="user_id")
    assert "'uid', 'song', 'when'" in str(e)
    e = raises(
        lambda: load_dataset("csv", file, user_col="uid", item_col="song", timestamp_col="when"),
        file="log.csv",
        line=3,
        field="when",
    )
    assert "expected a unix timestamp or an ISO date-time, got 'yesterday'" in str(e)
    with pytest.raises(DataError, match="the file has 3 column"):
        load_dataset("csv", file, has_header=False, item_col=5)
    with pytest.raises(ConfigError, match="mapped twice"):
        load_dataset("csv", file, user_col="uid", item_col="uid")


def test_parquet(tmp_path: Path) -> None:
    file = tmp_path / "log.parquet"
    pl.DataFrame(
        {
            "u": [1, 1, 2],
            "i": ["x", "y", "x"],
            "t": [dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1)],
            "w": [1.5, 2.0, 1.0],
        }
    ).write_parquet(file)
    data = load_dataset("parquet", file, user_col="u", item_col="i", timestamp_col="t", weight_col="w")
    assert seqs(data) == {"1": ["y", "x"], "2": ["x"]}
    assert sorted(data.frame.get_column("weight").to_list()) == [1.0, 1.5, 2.0]


def test_parquet_malformed(tmp_path: Path) -> None:
    file = tmp_path / "log.parquet"
    pl.DataFrame({"user": ["a", None], "item": ["x", "y"]}).write_parquet(file)
    e = raises(lambda: load_dataset("parquet", file), file="log.parquet", line=2, field="user")
    assert "missing value" in str(e)
    write(tmp_path / "not.parquet", "user,item\n")
    e = raises(
        lambda: load_dataset("parquet", tmp_path / "not.parquet"), file="not.parquet", line=None, field=None
    )
    assert "Parquet" in str(e)


# ---- the registry ------------------------------------------------------------------------------------------
def test_registry_names_and_option_checks(tmp_path: Path) -> None:
    assert DATASETS == (
        "ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "ml-latest",
        "lastfm-2k", "steam-200k", "csv", "parquet", "seq", "userlines",
    )  # fmt: skip
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("netflix", tmp_path)
    with pytest.raises(ConfigError, match="unknown option"):
        load_dataset("ml-100k", ml100k(tmp_path), user_col="x")
    with pytest.raises(DataError, match="pass its path"):
        load_dataset("csv")


def test_synthetic_is_generated_lazily() -> None:
    pytest.importorskip("playnext.data.synthetic")
    data = load_dataset("synthetic", n_users=50, n_items=40, seed=0)
    assert isinstance(data, Interactions) and data.n_users > 0
    with pytest.raises(ConfigError, match="unknown option"):
        load_dataset("synthetic", n_user=5)
