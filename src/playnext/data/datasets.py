"""Readers of the original files of public movie, music and game datasets, registered by name.

Each reader takes the files exactly as published (no hand conversion) and returns
`Interactions` in a stable per-user time order: timestamp, ties by position in the file.

Bad input never escapes as a polars, decoding or value error. Every field is first read as a
string and cast in one vectorised pass; only when a record fails is it traced back to its
line (a second, filtered pass) and reported as a `DataError` naming the file, the 1-based
line and the field. Checking therefore costs no Python work per row, so ML-32M still
streams through polars.
"""

from __future__ import annotations

import csv
import inspect
import io
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from playnext.data import download as dl
from playnext.data.interactions import META_SCHEMA, Columns, Interactions
from playnext.errors import ConfigError, DataError

C = Columns
Reader = Callable[..., Interactions]
_READERS: dict[str, Reader] = {}


def _register(*names: str) -> Callable[[Reader], Reader]:
    def deco(fn: Reader) -> Reader:
        for name in names:
            _READERS[name] = fn
        return fn

    return deco


def load_dataset(
    name: str,
    path: str | Path | None = None,
    *,
    cache_dir: Path | None = None,
    download: bool = False,
    allow_unverified: bool = False,
    **options: Any,
) -> Interactions:
    """Read dataset `name` from `path` (its folder or file), or from the download cache.

    With no `path`, downloadable datasets come from `cache_dir` (default `$PLAYNEXT_CACHE` or
    `~/.cache/playnext`). They are fetched from the official URL only when `download=True`, and
    kept only if the sha256 matches. `options` go to the reader, for example `events="all"`
    for steam-200k or `user_col=...` for csv. An unknown option is an error, not ignored.
    """
    key = name.strip().lower()
    if key == "synthetic":  # generated, not read: no path, its options are the world's size
        from playnext.data.synthetic import generate_world

        _check_options(key, generate_world, options, skip=0)
        return generate_world(**options)
    reader = _READERS.get(key)
    if reader is None:
        raise ConfigError(f"unknown dataset {name!r}; choose from {', '.join((*DATASETS, 'synthetic'))}")
    _check_options(key, reader, options)
    if path is None:
        folder = dl.locate(key, cache_dir, download=download, allow_unverified=allow_unverified)
    else:
        folder = Path(path).expanduser()
    return reader(folder, key, **options)


def _check_options(name: str, fn: Callable[..., Any], options: Mapping[str, Any], skip: int = 2) -> None:
    """Typos in options fail loudly; `skip` leaves out the reader's own (path, name) arguments."""
    params = list(inspect.signature(fn).parameters)[skip:]
    unknown = sorted(set(options) - set(params))
    if unknown:
        accepted = ", ".join(params) if params else "none"
        raise ConfigError(f"unknown option(s) for {name}: {', '.join(unknown)} (accepted: {accepted})")


# ---- reading text as strings, with line numbers -------------------------------------------------
Kind = Literal["id", "text", "int", "float", "time"]
_EXPECTED: dict[str, str] = {
    "id": "an id",
    "text": "a value",
    "int": "an integer",
    "float": "a finite number",
    "time": "a unix timestamp or an ISO date-time",
}
_SEP_NAMES = {"\t": "tabs", ",": "commas", " ": "spaces", ";": "semicolons", None: "spaces or tabs"}
_LINE = "_line"  # 1-based line number of a record
_OK = "_ok"  # the record has the right number of fields
_COUNT = "_n"  # how many fields it has, where known


@dataclass(frozen=True)
class _Text:
    """A text file to parse. `data` holds its UTF-8 bytes when it had to be transcoded."""

    path: Path
    data: bytes | None = None

    @property
    def source(self) -> Path | bytes:
        return self.path if self.data is None else self.data


@dataclass(frozen=True)
class _Table:
    """A file's records as string fields, read lazily: `_line`, one column per field, `_ok`."""

    text: _Text
    frame: pl.LazyFrame
    fields: tuple[str, ...]
    sep: str | None
    style: Literal["lines", "csv", "rows"]

    @property
    def layout(self) -> str:
        return f"{len(self.fields)} fields separated by {_sep_name(self.sep)}"


def _sep_name(sep: str | None) -> str:
    return _SEP_NAMES.get(sep, repr(sep))


def _require_file(path: Path) -> None:
    if not path.exists():
        raise DataError("file not found", path=path)
    if not path.is_file():
        raise DataError("expected a file, got a folder", path=path)
    if path.stat().st_size == 0:
        raise DataError("the file is empty", path=path)


def _open_text(path: Path, *, latin1: bool = False) -> _Text:
    """A UTF-8 file; with `latin1`, an older file that is not valid UTF-8 is transcoded from latin-1."""
    _require_file(path)
    if not latin1:
        return _Text(path)
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return _Text(path, raw.decode("latin-1").encode("utf-8"))
    return _Text(path)


def _split_lines(
    text: _Text, sep: str | None, fields: Sequence[str], *, header: bool = False, parts_column: bool = False
) -> _Table:
    """Split every line on `sep` (any string; None = runs of spaces/tabs). Quotes are not special."""
    lines = pl.scan_csv(
        text.source,
        has_header=False,
        separator="\x1f",  # a byte no text file uses: each line is one field
        quote_char=None,
        schema={"_text": pl.String},
        glob=False,
    ).with_row_index(_LINE, offset=1)
    s = (
        pl.when(pl.col(_LINE) == 1)
        .then(pl.col("_text").str.strip_prefix("\ufeff"))
        .otherwise(pl.col("_text"))
    )
    if sep is None:
        s = s.str.strip_chars(" \t").str.replace_all(r"[ \t]+", " ")
    frame = lines.select(_LINE, s.alias("_s"))
    frame = frame.filter(pl.col("_s").str.strip_chars().str.len_bytes() > 0)  # blank lines are skipped
    if header:
        frame = frame.filter(pl.col(_LINE) > 1)
    frame = frame.with_columns(pl.col("_s").str.split(" " if sep is None else sep).alias("_parts"))
    parts = pl.col("_parts")
    frame = frame.select(
        _LINE,
        *[parts.list.get(i, null_on_oob=True).alias(f) for i, f in enumerate(fields)],
        (parts.list.len() == len(fields)).alias(_OK),
        parts.list.len().alias(_COUNT),
        *([parts.alias("_parts")] if parts_column else []),
    )
    return _Table(text, frame, tuple(fields), sep, "lines")


def _scan_fields(text: _Text, sep: str, fields: Sequence[str], *, header: bool) -> _Table:
    """A delimited file with CSV quoting; a spare column catches records with too many fields."""
    schema = {f: pl.String for f in fields} | {"_extra": pl.String}
    frame = pl.scan_csv(
        text.source,
        has_header=False,
        separator=sep,
        quote_char='"',
        schema=schema,
        truncate_ragged_lines=True,
        missing_columns="insert",
        glob=False,
    ).with_row_index(_LINE, offset=1)
    first = pl.col(fields[0])
    frame = frame.with_columns(
        pl.when(pl.col(_LINE) == 1).then(first.str.strip_prefix("\ufeff")).otherwise(first).alias(fields[0])
    )
    if header:
        frame = frame.filter(pl.col(_LINE) > 1)
    frame = frame.filter(~pl.all_horizontal([pl.col(f).is_null() for f in fields])).with_columns(
        pl.col("_extra").is_null().alias(_OK), pl.lit(None, dtype=pl.UInt32).alias(_COUNT)
    )
    return _Table(text, frame, tuple(fields), sep, "csv")


def _split_record(line: str, sep: str | None) -> list[str]:
    if sep is None:
        return line.split()
    if len(sep) == 1:
        try:
            return next(csv.reader([line], delimiter=sep), [])
        except csv.Error:  # a field over csv's size limit, a stray carriage return: split without quotes
            return line.split(sep)
    return line.split(sep)


def _line_text(text: _Text, lineno: int) -> str:
    """One physical line, decoded leniently (only used to explain an error)."""
    with io.BytesIO(text.data) if text.data is not None else open(text.path, "rb") as f:
        for i, raw in enumerate(f, 1):
            if i == lineno:
                return raw.decode("utf-8", errors="replace").rstrip("\r\n").lstrip("\ufeff")
    return ""


def _snip(s: str, n: int = 80) -> str:
    return repr(s if len(s) <= n else s[:n] + "…")


def _check_header(text: _Text, expected: Sequence[str], sep: str) -> None:
    line = _line_text(text, 1)
    got = [g.strip().lower() for g in _split_record(line, sep)]
    if got != [e.lower() for e in expected]:
        hint = f" (wrong separator? expected {_sep_name(sep)})" if len(got) != len(expected) else ""
        raise DataError(
            f"expected the header {sep.join(expected)!r}, got {_snip(line)}{hint}", path=text.path, line=1
        )


def _clean(col: pl.Expr, kind: Kind) -> pl.Expr:
    """The raw field, null when blank; ids and numbers without surrounding spaces."""
    stripped = col.str.strip_chars()
    return pl.when(stripped.str.len_bytes() > 0).then(col if kind == "text" else stripped)


def _convert(raw: pl.Expr, kind: Kind) -> pl.Expr:
    """Vectorised cast of a cleaned field; null where the value is not of its kind."""
    if kind in ("id", "text"):
        return raw
    if kind == "int":
        return raw.cast(pl.Int64, strict=False)
    number = raw.cast(pl.Float64, strict=False)
    finite = pl.when(number.is_finite()).then(number)
    if kind == "float":
        return finite
    return pl.coalesce(raw.cast(pl.Int64, strict=False), finite.floor().cast(pl.Int64, strict=False))


def _iso_seconds(values: pl.Series) -> pl.Series:
    """ISO date-times as unix seconds (UTC when no zone is given); null where unparseable."""
    try:
        return values.str.to_datetime(strict=False, time_unit="us").dt.epoch("s").cast(pl.Int64)
    except pl.exceptions.PolarsError:  # no format fits the first value
        return pl.Series(values.name, [None] * len(values), dtype=pl.Int64)


def _typed(
    t: _Table, kinds: Mapping[str, Kind], *, optional: Collection[str] = (), keep: Sequence[str] = ()
) -> pl.DataFrame:
    """Cast fields to their kinds. The first bad record raises a DataError with file, line and field."""
    exprs: list[pl.Expr] = []
    for name, kind in kinds.items():
        raw = _clean(pl.col(name), kind)
        value = _convert(raw, kind)
        exprs += [value.alias(name), raw.is_not_null().alias(f"_has:{name}")]
        if kind == "time":  # not numeric: kept to try ISO parsing on just those values
            exprs.append(pl.when(value.is_null()).then(raw).alias(f"_iso:{name}"))
    df = _collect(t, t.frame.select(_LINE, _OK, *exprs, *keep))
    if df.height == 0:
        raise DataError("no data rows", path=t.text.path)
    for name, kind in kinds.items():
        iso = df.get_column(f"_iso:{name}") if kind == "time" else None
        if iso is not None and iso.null_count() < len(iso):
            df = df.with_columns(pl.coalesce(pl.col(name), _iso_seconds(iso)).alias(name))
    bad = ~pl.col(_OK)
    for name in kinds:
        has = pl.col(f"_has:{name}")
        bad = bad | (has & pl.col(name).is_null())
        if name not in optional:
            bad = bad | ~has
    rows = df.select(bad.alias("_bad")).to_series().arg_true()
    if len(rows):
        raise _explain(t, int(df.get_column(_LINE)[int(rows[0])]), kinds, optional)
    return df.select(_LINE, *kinds, *keep)


def _check_allowed(df: pl.DataFrame, field: str, allowed: Sequence[object], path: Path) -> None:
    """A field that must take one of a few values (a flag, a behaviour)."""
    bad = (~df.get_column(field).is_in(list(allowed)) & df.get_column(field).is_not_null()).arg_true()
    if len(bad):
        r = df.row(int(bad[0]), named=True)
        expected = " or ".join(repr(a) for a in allowed)
        raise DataError(
            f"expected {expected}, got {_snip(str(r[field]))}", path=path, line=r[_LINE], field=field
        )


# a corrupt Parquet file can make polars' Rust decoder panic: PanicException is a BaseException
_POLARS_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException)


def _collect(t: _Table, lf: pl.LazyFrame) -> pl.DataFrame:
    try:
        return lf.collect(engine="streaming")
    except _POLARS_ERRORS as e:
        raise _diagnose(t, e) from None


def _diagnose(t: _Table, error: Exception) -> DataError:
    """Find why polars could not read a file: usually bytes that are not UTF-8."""
    if t.style != "rows":
        with io.BytesIO(t.text.data) if t.text.data is not None else open(t.text.path, "rb") as f:
            for i, raw in enumerate(f, 1):
                if b"\x1f" in raw:  # the byte `_split_lines` relies on never seeing
                    return DataError("unexpected control character \\x1f", path=t.text.path, line=i)
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    field = None
                    if t.sep is not None:
                        k = raw[: e.start].count(t.sep.encode())
                        field = t.fields[k] if k < len(t.fields) else None
                    return DataError(
                        f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                        "save the file as UTF-8",
                        path=t.text.path,
                        line=i,
                        field=field,
                    )
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return DataError(f"could not read the file: {reason}", path=t.text.path)


def _explain(t: _Table, line: int, kinds: Mapping[str, Kind], optional: Collection[str]) -> DataError:
    """The precise reason why record `line` failed: field count first, then the first bad field."""
    row = _collect(t, t.frame.filter(pl.col(_LINE) == line)).row(0, named=True)
    where: dict[str, Any] = {"path": t.text.path, "line": line}
    count = row[_COUNT]
    if t.style == "csv":
        count = len(_split_record(_line_text(t.text, line), t.sep))
    if t.style != "rows" and (not row[_OK] or count != len(t.fields)) and count is not None:
        field = t.fields[count] if count < len(t.fields) else None
        text = _line_text(t.text, line)
        return DataError(f"expected {t.layout}, found {count}: {_snip(text)}", field=field, **where)
    for name, kind in kinds.items():
        raw = row[name]
        value = pl.DataFrame({"v": [raw]}, schema={"v": pl.String}).select(_clean(pl.col("v"), kind))
        cleaned = value.item()
        if cleaned is None:
            if name not in optional:
                return DataError("missing value", field=name, **where)
            continue
        converted = value.select(_convert(pl.col("v"), kind)).item()
        if converted is None and kind == "time":
            converted = _iso_seconds(value.to_series()).item()
        if converted is None:
            return DataError(f"expected {_EXPECTED[kind]}, got {_snip(raw)}", field=name, **where)
    return DataError(f"expected {t.layout}", **where)


# ---- assembling Interactions ------------------------------------------------------------------------
def _build(raw: pl.DataFrame, meta: pl.DataFrame | None, name: str, kind: str | None) -> Interactions:
    """Interactions from external ids; `position` = order in the file, the time-order tie-breaker."""
    if C.POSITION not in raw.columns:
        raw = raw.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(C.POSITION))
    return Interactions.from_frame(raw, meta=meta, name=name, kind=kind)


def _meta(
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


def _title_year(title: pl.Expr) -> pl.Expr:
    """MovieLens puts the release year at the end of the title: 'Heat (1995)', 'X (2006–2007)'."""
    return title.str.extract(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$", 1).cast(pl.Int32, strict=False)


def _folder(path: Path, candidates: Sequence[str]) -> Path:
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


def _file(path: Path) -> Path:
    _require_file(path)
    return path


def _ids(user: str, item: str) -> list[pl.Expr]:
    return [pl.col(user).cast(pl.String).alias(C.USER), pl.col(item).cast(pl.String).alias(C.ITEM)]


# ---- MovieLens --------------------------------------------------------------------------------------
_ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
_ML_DAT = ("UserID", "MovieID", "Rating", "Timestamp")
_ML_CSV = ("userId", "movieId", "rating", "timestamp")
_ML1M_ORDER = "interactions_all_users.txt"  # all 1,000,209 pairs, each user's in time order


def _ratings(df: pl.DataFrame, user: str, item: str, rating: str, ts: str) -> pl.DataFrame:
    """Explicit ratings: the rating is the weight."""
    return df.select(
        *_ids(user, item),
        pl.col(ts).alias(C.TIMESTAMP),
        pl.col(rating).cast(pl.Float32).alias(C.WEIGHT),
        pl.lit("rating").alias(C.EVENT),
    )


@_register("ml-100k")
def _ml100k(path: Path, name: str) -> Interactions:
    """u.data (tab: user item rating timestamp) and u.item (pipe-separated, latin-1, genre flags)."""
    folder = _folder(path, ("u.data",))
    fields = ("user id", "item id", "rating", "timestamp")
    t = _split_lines(_open_text(folder / "u.data"), "\t", fields)
    df = _typed(t, {"user id": "int", "item id": "int", "rating": "float", "timestamp": "int"})
    raw = _ratings(df, "user id", "item id", "rating", "timestamp")
    return _build(raw, _ml100k_items(folder), name, "movie")


def _ml100k_items(folder: Path) -> pl.DataFrame | None:
    if not (folder / "u.item").is_file():
        return None  # metadata is optional: titles fall back to ids
    genres = _ML100K_GENRES
    if (folder / "u.genre").is_file():
        g = _typed(
            _split_lines(_open_text(folder / "u.genre"), "|", ("genre", "index")),
            {"genre": "text", "index": "int"},
        )
        genres = tuple(g.sort("index").get_column("genre").to_list())
    fields = ("movie id", "movie title", "release date", "video release date", "IMDb URL", *genres)
    t = _split_lines(_open_text(folder / "u.item", latin1=True), "|", fields)
    kinds: dict[str, Kind] = {"movie id": "int", "movie title": "text", "release date": "text"}
    kinds |= {g: "int" for g in genres}
    df = _typed(t, kinds, optional=("release date", *genres))
    for genre in genres:
        _check_allowed(df, genre, (0, 1), t.text.path)
    flags = pl.concat_list([pl.when(pl.col(g) == 1).then(pl.lit(g)) for g in genres]).list.drop_nulls()
    year = pl.coalesce(
        _title_year(pl.col("movie title")),
        pl.col("release date").str.extract(r"(\d{4})\s*$", 1).cast(pl.Int32, strict=False),
    )
    return df.select(_meta(pl.col("movie id"), pl.col("movie title"), flags, year, "movie"))


def _movies(t: _Table) -> pl.DataFrame:
    """movies.dat / movies.csv: id, 'Title (Year)', 'Genre|Genre' (or '(no genres listed)')."""
    mid, title, genres = t.fields
    df = _typed(t, {mid: "int", title: "text", genres: "text"}, optional=(genres,))
    split = (
        pl.col(genres)
        .fill_null("")
        .str.split("|")
        .list.eval(pl.element().filter((pl.element() != "") & (pl.element() != "(no genres listed)")))
    )
    return df.select(
        _meta(pl.col(mid), pl.col(title).str.strip_chars(), split, _title_year(pl.col(title)), "movie")
    )


def _ml_dat_meta(folder: Path) -> pl.DataFrame | None:
    if not (folder / "movies.dat").is_file():
        return None
    text = _open_text(folder / "movies.dat", latin1=True)
    return _movies(_split_lines(text, "::", ("MovieID", "Title", "Genres")))


def _ratings_dat(path: Path) -> pl.DataFrame:
    t = _split_lines(_open_text(path), "::", _ML_DAT)
    df = _typed(t, {"UserID": "int", "MovieID": "int", "Rating": "float", "Timestamp": "int"})
    return _ratings(df, *_ML_DAT)


@_register("ml-1m")
def _ml1m(path: Path, name: str) -> Interactions:
    """ratings.dat (UserID::MovieID::Rating::Timestamp) when complete, else the time-ordered pairs file.

    Without ratings.dat, `interactions_all_users.txt` gives every (user, movie) pair in each
    user's time order. It has no timestamps, so file order alone is the order.
    """
    folder = _folder(path, ("ratings.dat", _ML1M_ORDER))
    if (folder / "ratings.dat").is_file():
        raw = _ratings_dat(folder / "ratings.dat")
    else:
        t = _split_lines(_open_text(folder / _ML1M_ORDER), None, ("UserID", "MovieID"))
        df = _typed(t, {"UserID": "int", "MovieID": "int"})
        raw = df.select(_ids("UserID", "MovieID"))
    return _build(raw, _ml_dat_meta(folder), name, "movie")


@_register("ml-10m")
def _ml10m(path: Path, name: str) -> Interactions:
    """ml-10M100K/ratings.dat and movies.dat, '::'-separated."""
    folder = _folder(path, ("ratings.dat",))
    return _build(_ratings_dat(folder / "ratings.dat"), _ml_dat_meta(folder), name, "movie")


@_register("ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "ml-latest")
def _ml_csv(path: Path, name: str) -> Interactions:
    """ratings.csv (userId,movieId,rating,timestamp) and movies.csv (quoted titles), streamed."""
    folder = _folder(path, ("ratings.csv",))
    text = _open_text(folder / "ratings.csv")
    _check_header(text, _ML_CSV, ",")
    t = _scan_fields(text, ",", _ML_CSV, header=True)
    df = _typed(t, {"userId": "int", "movieId": "int", "rating": "float", "timestamp": "int"})
    meta = None
    if (folder / "movies.csv").is_file():
        movies = _open_text(folder / "movies.csv")
        _check_header(movies, ("movieId", "title", "genres"), ",")
        meta = _movies(_scan_fields(movies, ",", ("movieId", "title", "genres"), header=True))
    return _build(_ratings(df, *_ML_CSV), meta, name, "movie")


# ---- Last.fm (HetRec 2011) ------------------------------------------------------------------------
_TAGGED = ("userID", "artistID", "tagID", "day", "month", "year")


def _tag_events(path: Path) -> pl.DataFrame:
    """user_taggedartists.dat as (user, artist, tag, timestamp = the day's 00:00 UTC)."""
    text = _open_text(path)
    _check_header(text, _TAGGED, "\t")
    df = _typed(_split_lines(text, "\t", _TAGGED, header=True), dict.fromkeys(_TAGGED, "int"))
    day = pl.format("{}-{}-{}", "year", "month", "day").str.to_date("%Y-%m-%d", strict=False)
    df = df.with_columns((day.cast(pl.Int64) * 86_400).alias(C.TIMESTAMP))
    bad = df.get_column(C.TIMESTAMP).is_null().arg_true()
    if len(bad):
        r = df.row(int(bad[0]), named=True)
        raise DataError(
            f"not a valid date: day {r['day']}, month {r['month']}, year {r['year']}",
            path=path,
            line=r[_LINE],
            field="day",
        )
    return df


def _artists(folder: Path, events: pl.DataFrame | None) -> pl.DataFrame | None:
    """artists.dat names; genres = the artist's 3 most used tags (ties: lower tag id)."""
    if not (folder / "artists.dat").is_file():
        return None
    fields = ("id", "name", "url", "pictureURL")
    text = _open_text(folder / "artists.dat", latin1=True)
    _check_header(text, fields, "\t")
    df = _typed(_split_lines(text, "\t", fields, header=True), {"id": "int", "name": "text"})
    meta = df.select(_meta(pl.col("id"), pl.col("name"), None, None, "music"))
    if events is None or not (folder / "tags.dat").is_file():
        return meta
    tags_text = _open_text(folder / "tags.dat", latin1=True)
    _check_header(tags_text, ("tagID", "tagValue"), "\t")
    tags = _typed(
        _split_lines(tags_text, "\t", ("tagID", "tagValue"), header=True),
        {"tagID": "int", "tagValue": "text"},
    )
    top = (
        events.group_by("artistID", "tagID")
        .len()
        .sort(["artistID", "len", "tagID"], descending=[False, True, False])
        .group_by("artistID", maintain_order=True)
        .head(3)
        .join(tags.select("tagID", "tagValue"), on="tagID", how="inner", maintain_order="left")
        .group_by("artistID", maintain_order=True)
        .agg(pl.col("tagValue").str.strip_chars().alias("_tags"))
        .select(pl.col("artistID").cast(pl.String).alias(C.ITEM_ID), "_tags")
    )
    return (
        meta.join(top, on=C.ITEM_ID, how="left", maintain_order="left")
        .with_columns(pl.col("_tags").fill_null(pl.lit([], dtype=pl.List(pl.String))).alias(C.GENRES))
        .select(list(META_SCHEMA))
    )


@_register("lastfm-2k")
def _lastfm(path: Path, name: str, *, events: str = "plays") -> Interactions:
    """HetRec 2011 Last.fm: one interaction per (user, artist) with weight = play count.

    The play counts carry no time. A pair is dated by the user's first tag on that artist in
    user_taggedartists.dat (day precision, UTC), so sequences follow a real order. Undated
    pairs get timestamp 0: they come before the dated ones, in file order. With
    `events="tags"`, the tag assignments themselves are the events.
    """
    if events not in ("plays", "tags"):
        raise ConfigError(f"lastfm-2k: events must be 'plays' or 'tags', got {events!r}")
    tagged_file = "user_taggedartists.dat"
    folder = _folder(path, ("user_artists.dat",) if events == "plays" else (tagged_file,))
    tagged = (
        _tag_events(folder / tagged_file) if events == "tags" or (folder / tagged_file).is_file() else None
    )
    if tagged is not None and events == "tags":
        raw = tagged.select(*_ids("userID", "artistID"), C.TIMESTAMP, pl.lit("tag").alias(C.EVENT))
    else:
        text = _open_text(folder / "user_artists.dat")
        fields = ("userID", "artistID", "weight")
        _check_header(text, fields, "\t")
        plays = _typed(
            _split_lines(text, "\t", fields, header=True),
            {"userID": "int", "artistID": "int", "weight": "float"},
        )
        if tagged is not None:
            first = tagged.group_by("userID", "artistID").agg(pl.col(C.TIMESTAMP).min())
            plays = plays.join(first, on=["userID", "artistID"], how="left", maintain_order="left")
        else:
            plays = plays.with_columns(pl.lit(None, dtype=pl.Int64).alias(C.TIMESTAMP))
        raw = plays.select(
            *_ids("userID", "artistID"),
            pl.col(C.TIMESTAMP).fill_null(0),
            pl.col("weight").cast(pl.Float32).alias(C.WEIGHT),
            pl.lit("play").alias(C.EVENT),
        )
    return _build(raw, _artists(folder, tagged), name, "music")


# ---- Steam ---------------------------------------------------------------------------------------------
@_register("steam-200k")
def _steam(path: Path, name: str, *, events: str = "pairs") -> Interactions:
    """steam-200k.csv: user,"game",purchase|play,hours-or-1.0,0; items are game titles.

    By default there is one interaction per (user, game), placed where the pair first appears.
    Its weight is the hours played (0 if never played) and its event is "play" or "purchase".
    `events="all"` keeps all 200k rows: weight = the value and event = the behaviour.
    """
    if events not in ("pairs", "all"):
        raise ConfigError(f"steam-200k: events must be 'pairs' or 'all', got {events!r}")
    file = path if path.is_file() else _folder(path, ("steam-200k.csv",)) / "steam-200k.csv"
    fields = ("user_id", "game_title", "behavior", "value", "unused")
    t = _scan_fields(_open_text(file), ",", fields, header=False)
    kinds: dict[str, Kind] = {"user_id": "int", "game_title": "text", "behavior": "id", "value": "float"}
    df = _typed(t, kinds)
    _check_allowed(df, "behavior", ("purchase", "play"), file)
    df = df.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(C.POSITION))
    play = pl.col("behavior") == "play"
    if events == "all":
        raw = df.select(
            *_ids("user_id", "game_title"),
            C.POSITION,
            pl.col("value").cast(pl.Float32).alias(C.WEIGHT),
            pl.col("behavior").alias(C.EVENT),
        )
    else:
        raw = (
            df.group_by("user_id", "game_title", maintain_order=True)
            .agg(
                pl.col(C.POSITION).first(),
                pl.col("value").filter(play).sum().cast(pl.Float32).alias(C.WEIGHT),
                play.any().alias("_played"),
            )
            .select(
                *_ids("user_id", "game_title"),
                C.POSITION,
                C.WEIGHT,
                pl.when("_played").then(pl.lit("play")).otherwise(pl.lit("purchase")).alias(C.EVENT),
            )
        )
    titles = raw.select(pl.col(C.ITEM).unique(maintain_order=True))
    meta = titles.select(_meta(pl.col(C.ITEM), pl.col(C.ITEM), None, None, "game"))
    return _build(raw, meta, name, "game")


# ---- any table with a column mapping --------------------------------------------------------------------
_SEPARATORS = {"\\t": "\t", "tab": "\t", "comma": ",", "space": " ", "semicolon": ";", "pipe": "|"}
_OPTIONAL_COLS = {
    C.TIMESTAMP: "timestamp_col",
    C.WEIGHT: "weight_col",
    C.EVENT: "event_col",
    C.TITLE: "title_col",
}
_COL_KINDS: dict[str, Kind] = {
    C.USER: "id", C.ITEM: "id", C.TIMESTAMP: "time", C.WEIGHT: "float", C.EVENT: "text", C.TITLE: "text"
}  # fmt: skip


def _mapping(
    names: Sequence[str], has_header: bool, given: Mapping[str, str | int | None], path: Path
) -> dict[str, str]:
    """Our column (user, item, …) → the file's column, from names or 0-based indices.

    Unmapped optional columns are taken when the header has them under our own name.
    """
    out: dict[str, str] = {}
    for ours, col in given.items():
        option = _OPTIONAL_COLS.get(ours, f"{ours}_col")
        if col is None:
            if ours in (C.USER, C.ITEM):
                col = ours if has_header else (0 if ours == C.USER else 1)
            elif has_header and ours in names:
                col = ours
            else:
                continue
        if isinstance(col, bool) or not isinstance(col, str | int):
            raise ConfigError(f"{option} must be a column name or a 0-based index, got {col!r}")
        if isinstance(col, int):
            if not 0 <= col < len(names):
                raise DataError(f"{option}={col}: the file has {len(names)} column(s)", path=path, line=1)
            col = names[col]
        if col not in names:
            raise DataError(
                f"no column {col!r} ({option}); the columns are: {', '.join(map(repr, names))}",
                path=path,
                line=1 if has_header else None,
                field=col,
            )
        if col in out.values():
            raise ConfigError(f"column {col!r} is mapped twice ({option})")
        out[ours] = col
    return out


def _from_mapped(df: pl.DataFrame, cols: Mapping[str, str], name: str, kind: str | None) -> Interactions:
    raw = df.select([pl.col(src).alias(ours) for ours, src in cols.items() if ours != C.TITLE])
    if C.WEIGHT in raw.columns:
        raw = raw.with_columns(pl.col(C.WEIGHT).fill_null(1.0))
    meta = None
    if C.TITLE in cols:
        meta = (
            df.select(pl.col(cols[C.ITEM]).alias("_i"), pl.col(cols[C.TITLE]).alias("_t"))
            .filter(pl.col("_t").is_not_null())
            .unique("_i", keep="first", maintain_order=True)
            .select(_meta(pl.col("_i"), pl.col("_t"), None, None, kind))
        )
    return _build(raw, meta, name, kind)


@_register("csv")
def _csv(
    path: Path,
    name: str,
    *,
    user_col: str | int | None = None,
    item_col: str | int | None = None,
    timestamp_col: str | int | None = None,
    weight_col: str | int | None = None,
    event_col: str | int | None = None,
    title_col: str | int | None = None,
    separator: str = ",",
    has_header: bool = True,
    kind: str | None = None,
) -> Interactions:
    """Any delimited text file. Columns are named (with a header) or given as 0-based indices.

    Timestamps may be unix seconds or ISO date-times. Rows keep file order as the tie-breaker.
    A multi-character separator such as '::' splits lines literally, without quoting.
    """
    sep = _SEPARATORS.get(separator, separator)
    if not isinstance(sep, str) or not sep:
        raise ConfigError(f"separator must be a non-empty string, got {separator!r}")
    if not isinstance(has_header, bool):
        raise ConfigError(f"has_header must be true or false, got {has_header!r}")
    text = _open_text(_file(path))
    first = _split_record(_line_text(text, 1), sep)
    names = [n.strip() for n in first] if has_header else [f"column {i}" for i in range(len(first))]
    if len(set(names)) != len(names):
        raise DataError(f"duplicate column names in the header: {names}", path=path, line=1)
    given = {
        C.USER: user_col, C.ITEM: item_col, C.TIMESTAMP: timestamp_col,
        C.WEIGHT: weight_col, C.EVENT: event_col, C.TITLE: title_col,
    }  # fmt: skip
    cols = _mapping(names, has_header, given, path)
    if len(sep) == 1:
        t = _scan_fields(text, sep, names, header=has_header)
    else:
        t = _split_lines(text, sep, names, header=has_header)
    kinds = {src: _COL_KINDS[ours] for ours, src in cols.items()}
    optional = [src for ours, src in cols.items() if ours not in (C.USER, C.ITEM)]
    return _from_mapped(_typed(t, kinds, optional=optional), cols, name, kind)


_PARQUET_ERRORS = (*_POLARS_ERRORS, OSError)


@_register("parquet")
def _parquet(
    path: Path,
    name: str,
    *,
    user_col: str | int | None = None,
    item_col: str | int | None = None,
    timestamp_col: str | int | None = None,
    weight_col: str | int | None = None,
    event_col: str | int | None = None,
    title_col: str | int | None = None,
    kind: str | None = None,
) -> Interactions:
    """A Parquet table with a column mapping. Errors name the 1-based row as the line."""
    _require_file(path)
    try:
        names = list(pl.read_parquet_schema(path))
    except _PARQUET_ERRORS as e:
        raise DataError(f"not a readable Parquet file: {str(e).strip().splitlines()[0]}", path=path) from None
    given = {
        C.USER: user_col, C.ITEM: item_col, C.TIMESTAMP: timestamp_col,
        C.WEIGHT: weight_col, C.EVENT: event_col, C.TITLE: title_col,
    }  # fmt: skip
    cols = _mapping(names, True, given, path)
    try:
        df = pl.read_parquet(path, columns=list(cols.values()))
    except _PARQUET_ERRORS as e:
        raise DataError(f"not a readable Parquet file: {str(e).strip().splitlines()[0]}", path=path) from None
    # typed values go through the same string checks as text files, so errors read the same
    as_text = []
    for src in cols.values():
        dtype = df.schema[src]
        col = pl.col(src)
        if dtype == pl.Date:
            col = col.cast(pl.Int64) * 86_400
        elif isinstance(dtype, pl.Datetime):
            col = col.dt.epoch("s")
        elif not (dtype.is_numeric() or isinstance(dtype, pl.String | pl.Categorical | pl.Enum | pl.Boolean)):
            raise DataError(f"unsupported column type {dtype}", path=path, field=src)
        as_text.append(col.cast(pl.String).alias(src))
    frame = df.lazy().select(
        pl.int_range(1, pl.len() + 1, dtype=pl.UInt32).alias(_LINE),
        *as_text,
        pl.lit(True).alias(_OK),
        pl.lit(None, dtype=pl.UInt32).alias(_COUNT),
    )
    t = _Table(_Text(path), frame, tuple(cols.values()), None, "rows")
    kinds = {src: _COL_KINDS[ours] for ours, src in cols.items()}
    optional = [src for ours, src in cols.items() if ours not in (C.USER, C.ITEM)]
    return _from_mapped(_typed(t, kinds, optional=optional), cols, name, kind)


# ---- sequence formats -----------------------------------------------------------------------------------
@_register("seq")
def _seq(path: Path, name: str, *, kind: str | None = None) -> Interactions:
    """SASRec/BERT4Rec benchmark files: one `user item` per line (spaces or tabs), in time order."""
    t = _split_lines(_open_text(_file(path)), None, ("user", "item"))
    df = _typed(t, {"user": "id", "item": "id"})
    return _build(df.select(_ids("user", "item")), None, name, kind)


@_register("userlines")
def _userlines(path: Path, name: str, *, kind: str | None = None) -> Interactions:
    """One line per user, `user item item …` (e.g. S3-Rec's LastFM.txt), in order along the line."""
    t = _split_lines(_open_text(_file(path)), None, ("user", "item"), parts_column=True)
    # any number of items is fine, as long as there is at least one (checked below)
    t = _Table(t.text, t.frame.with_columns(pl.lit(True).alias(_OK)), ("user",), None, "lines")
    df = _typed(t, {"user": "id"}, keep=("_parts",))
    short = df.get_column("_parts").list.len() < 2
    if short.any():
        line = int(df.get_column(_LINE).filter(short)[0])
        raise DataError(
            "expected a user id followed by at least one item id", path=path, line=line, field="item"
        )
    raw = df.select(pl.col("user").alias(C.USER), pl.col("_parts").list.slice(1).alias(C.ITEM)).explode(
        C.ITEM
    )
    return _build(raw, None, name, kind)


DATASETS: tuple[str, ...] = tuple(_READERS)
"""Names `load_dataset` reads from files (plus 'synthetic', which is generated)."""
