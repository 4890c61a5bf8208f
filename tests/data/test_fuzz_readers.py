"""Fuzzing every reader: malformed input either loads or raises DataError — never anything else.

Each reader gets its files in the published format, then one of them is corrupted by a few
random edits: random bytes, truncation, inserted control or non-UTF-8 bytes, a field of the
wrong type, a huge field, another encoding, another separator, shuffled or CRLF lines. The
prepared-store ingestion (`prepare`) is fuzzed the same way, since it parses the same files.
Budgets are small (a few seconds per reader) so this runs with the ordinary test suite.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playnext.data.readers import load_dataset
from playnext.data.store import prepare
from playnext.errors import DataError

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# reader -> (files in the published format, options); the first file is the main one
LAYOUTS: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
    "ml-100k": (
        {
            "u.data": "1\t10\t4\t300\n2\t10\t5\t100\n1\t20\t3\t200\n",
            "u.item": "10|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n20|Heat (1995)|||http://y|0|1|0\n",
            "u.genre": "unknown|0\nAction|1\nComedy|2\n",
        },
        {},
    ),
    "ml-1m": (
        {
            "ratings.dat": "1::122::5::838985046\n1::185::4::838983525\n2::122::3::838983000\n",
            "movies.dat": "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action\n",
        },
        {},
    ),
    "ml-1m-pairs": ({"interactions_all_users.txt": "1 10\n1 20\n2 10\n"}, {}),
    "ml-10m": (
        {
            "ratings.dat": "1::122::5::838985046\n1::185::4.5::838983525\n",
            "movies.dat": "122::Boomerang (1992)::Comedy|Romance\n",
        },
        {},
    ),
    "ml-32m": (
        {
            "ratings.csv": "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.0,96498\n2,1,2.5,9\n",
            "movies.csv": 'movieId,title,genres\n1,"Heat, The (1995)",Comedy|Drama\n3,X,(no genres listed)\n',
        },
        {},
    ),
    "lastfm-2k": (
        {
            "user_artists.dat": "userID\tartistID\tweight\n2\t51\t100\n2\t52\t50\n3\t51\t1\n",
            "user_taggedartists.dat": "userID\tartistID\ttagID\tday\tmonth\tyear\n2\t52\t4\t1\t4\t2009\n",
            "artists.dat": "id\tname\turl\tpictureURL\n51\tDuran Duran\thttp://a\thttp://p\n52\tMorcheeba\tb\t\n",
            "tags.dat": "tagID\ttagValue\n1\tpop\n4\tchill\n",
        },
        {},
    ),
    "steam-200k": (
        {
            "steam-200k.csv": '151603712,"The Elder Scrolls V Skyrim",purchase,1.0,0\n'
            '151603712,"The Elder Scrolls V Skyrim",play,273.0,0\n187131847,"Dota 2",play,0.7,0\n'
        },
        {},
    ),
    "csv": (
        {"log.csv": "user,item,timestamp,weight,title\na,x,2020-01-02T10:00,2,X\nb,y,15778368,,Y\na,y,,1,\n"},
        {},
    ),
    "seq": ({"seq.txt": "1 10\n2 11\n1  12\n"}, {}),
    "userlines": ({"lines.txt": "1 10 11 12\n2 11\n"}, {}),
}
READERS = {"ml-1m-pairs": "ml-1m"}  # layout name -> reader, where they differ

TOKENS = ["", " ", "x", "1.5", "-1", "1e309", "nan", "-inf", "9" * 40, '"', '""', "\t", "::", "|", ",",
          "é", "\x00", "\x1f", "\r", "\ufeff", "2020-13-45", "9999-12-31T23:59", "None", "1,5"]  # fmt: skip
SEPARATORS = [",", ";", "\t", " ", "|", "::", "\x1f", ""]


@st.composite
def corrupt(draw: st.DrawFn, valid: bytes) -> bytes:
    """`valid` after one to three random edits."""
    data = valid
    for op in draw(st.lists(st.sampled_from(EDITS), min_size=1, max_size=3)):
        data = op(draw, data)
    return data


def _random(draw: st.DrawFn, data: bytes) -> bytes:
    return draw(st.binary(max_size=200))


def _truncate(draw: st.DrawFn, data: bytes) -> bytes:
    return data[: draw(st.integers(0, len(data)))]


def _insert(draw: st.DrawFn, data: bytes) -> bytes:
    at = draw(st.integers(0, len(data)))
    junk = draw(
        st.one_of(st.binary(min_size=1, max_size=8), st.sampled_from([b"\xff", b"\x00", b"\x1f", b"\r"]))
    )
    return data[:at] + junk + data[at:]


def _field(draw: st.DrawFn, data: bytes) -> bytes:
    """One field (between separators) replaced by a value of the wrong type."""
    text = data.decode("latin-1")  # bijective on bytes
    cuts = [0] + [i + 1 for i, ch in enumerate(text) if ch in ",\t|:\n "] + [len(text)]
    k = draw(st.integers(0, len(cuts) - 2))
    end = next((i for i in range(cuts[k], len(text)) if text[i] in ",\t|:\n "), len(text))
    value = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=12)))
    return (text[: cuts[k]] + value + text[end:]).encode("utf-8")


def _huge(draw: st.DrawFn, data: bytes) -> bytes:
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(st.sampled_from([b"A", b"7", b" ", b"\t"])) * 100_000 + data[at:]


def _encoding(draw: st.DrawFn, data: bytes) -> bytes:
    codec = draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252", "utf-8-sig"]))
    return data.decode("utf-8", errors="replace").encode(codec, errors="replace")


def _separator(draw: st.DrawFn, data: bytes) -> bytes:
    old = draw(st.sampled_from([b",", b"\t", b"|", b"::", b" ", b"\n"]))
    return data.replace(old, draw(st.sampled_from(SEPARATORS)).encode())


def _lines(draw: st.DrawFn, data: bytes) -> bytes:
    lines = data.split(b"\n")
    how = draw(st.sampled_from(["shuffle", "drop", "duplicate", "crlf", "blank", "bom", "noeol"]))
    if how == "shuffle":
        lines = draw(st.permutations(lines))
    elif how == "drop" and lines:
        del lines[draw(st.integers(0, len(lines) - 1))]
    elif how == "duplicate" and lines:
        lines.insert(0, lines[draw(st.integers(0, len(lines) - 1))])
    elif how == "crlf":
        return data.replace(b"\n", b"\r\n")
    elif how == "blank":
        lines.insert(draw(st.integers(0, len(lines))), b"   \t ")
    elif how == "bom":
        return b"\xef\xbb\xbf" + data
    else:
        return data.rstrip(b"\n")
    return b"\n".join(lines)


EDITS: list[Callable[[st.DrawFn, bytes], bytes]] = [
    _random, _truncate, _insert, _field, _huge, _encoding, _separator, _lines
]  # fmt: skip


def loads_or_data_error(fn: Callable[[], object]) -> None:
    with contextlib.suppress(DataError):
        fn()


def fuzz_layout(layout: str, target: Callable[[Path], object]) -> Callable[..., None]:
    files, _ = LAYOUTS[layout]

    @FUZZ
    @given(which=st.sampled_from(sorted(files)), data=st.data())
    def run(which: str, data: st.DataObject) -> None:
        bad = data.draw(corrupt(files[which].encode("utf-8")), label=which)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for name, text in files.items():
                (folder / name).write_bytes(bad if name == which else text.encode("utf-8"))
            main = next(iter(files))
            loads_or_data_error(lambda: target(folder / main if len(files) == 1 else folder))

    return run


def _reader(layout: str) -> Callable[[Path], object]:
    name = READERS.get(layout, layout)
    return lambda path: load_dataset(name, path, **LAYOUTS[layout][1])


test_fuzz_ml100k = fuzz_layout("ml-100k", _reader("ml-100k"))
test_fuzz_ml1m = fuzz_layout("ml-1m", _reader("ml-1m"))
test_fuzz_ml1m_pairs = fuzz_layout("ml-1m-pairs", _reader("ml-1m-pairs"))
test_fuzz_ml10m = fuzz_layout("ml-10m", _reader("ml-10m"))
test_fuzz_ml_csv = fuzz_layout("ml-32m", _reader("ml-32m"))
test_fuzz_lastfm = fuzz_layout("lastfm-2k", _reader("lastfm-2k"))
test_fuzz_steam = fuzz_layout("steam-200k", _reader("steam-200k"))
test_fuzz_csv = fuzz_layout("csv", _reader("csv"))
test_fuzz_seq = fuzz_layout("seq", _reader("seq"))
test_fuzz_userlines = fuzz_layout("userlines", _reader("userlines"))


def _prepare(path: Path) -> object:
    with tempfile.TemporaryDirectory() as out:
        return prepare(path, Path(out) / "store", chunk_rows=2)


test_fuzz_prepare_ml_csv = fuzz_layout("ml-32m", lambda folder: _prepare(folder / "ratings.csv"))
test_fuzz_prepare_csv = fuzz_layout("csv", _prepare)
test_fuzz_prepare_seq = fuzz_layout("seq", _prepare)


# ---- Parquet: damaged files, and well-formed files with values of every awkward kind -----------------------
def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


VALID_PARQUET = _parquet_bytes(pl.DataFrame({"user": [1, 2], "item": ["a", "b"], "timestamp": [5, 1]}))
CELLS = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.sampled_from(TOKENS),
)


@st.composite
def awkward_frames(draw: st.DrawFn) -> bytes:
    """Parquet files whose columns hold nulls, NaN, ±inf, huge ints, odd strings, dates or lists."""
    n = draw(st.integers(0, 4))
    cols: dict[str, pl.Series] = {}
    for name in ("user", "item", "timestamp", "weight"):
        kind = draw(st.sampled_from(["cells", "date", "datetime", "list", "bool", "missing"]))
        if kind == "missing":
            continue
        if kind == "cells":
            values = draw(st.lists(CELLS, min_size=n, max_size=n))
            cols[name] = pl.Series(name, [None if v is None else str(v) for v in values], dtype=pl.String)
            if all(isinstance(v, int) or v is None for v in values):
                cols[name] = pl.Series(name, values, dtype=pl.Int64)
            elif all(isinstance(v, float) or v is None for v in values):
                cols[name] = pl.Series(name, values, dtype=pl.Float64)
        elif kind == "date":
            cols[name] = pl.Series(name, draw(st.lists(st.dates(), min_size=n, max_size=n)))
        elif kind == "datetime":
            cols[name] = pl.Series(name, draw(st.lists(st.datetimes(), min_size=n, max_size=n)))
        elif kind == "list":
            cols[name] = pl.Series(name, [[1, 2]] * n)
        else:
            cols[name] = pl.Series(name, draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return _parquet_bytes(pl.DataFrame(list(cols.values())))


@FUZZ
@given(blob=st.one_of(corrupt(VALID_PARQUET), awkward_frames()), via_store=st.booleans())
def test_fuzz_parquet(blob: bytes, via_store: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.parquet"
        path.write_bytes(blob)
        loads_or_data_error(lambda: _prepare(path) if via_store else load_dataset("parquet", path))
