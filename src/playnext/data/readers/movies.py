"""MovieLens readers: 100K, 1M, 10M and the CSV releases (20M, 25M, 32M, latest, latest-small)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from playnext.data.events import check_values
from playnext.data.interactions import Columns, Interactions
from playnext.data.readers.common import build, find_folder, ids, meta_row
from playnext.data.readers.registry import register
from playnext.data.tables import (
    Kind,
    Table,
    check_allowed,
    check_header,
    open_text,
    scan_fields,
    split_lines,
    typed,
)

C = Columns
ML_CSV = ("userId", "movieId", "rating", "timestamp")
"""The header of ratings.csv."""
ML_CSV_KINDS: dict[str, Kind] = {"userId": "int", "movieId": "int", "rating": "float", "timestamp": "int"}
_ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
_ML_DAT = ("UserID", "MovieID", "Rating", "Timestamp")
_ML1M_ORDER = "interactions_all_users.txt"  # all 1,000,209 pairs, each user's in time order
_MOVIES_CSV = ("movieId", "title", "genres")


def _ratings(df: pl.DataFrame, user: str, item: str, rating: str, ts: str) -> pl.DataFrame:
    """Explicit ratings: `rating` events whose value (the weight column) is the rating."""
    return df.select(
        *ids(user, item),
        pl.col(ts).alias(C.TIMESTAMP),
        pl.col(rating).cast(pl.Float32).alias(C.WEIGHT),
        pl.lit("rating").alias(C.EVENT),
    )


def _title_year(title: pl.Expr) -> pl.Expr:
    """MovieLens puts the release year at the end of the title: 'Heat (1995)', 'X (2006–2007)'."""
    return title.str.extract(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$", 1).cast(pl.Int32, strict=False)


@register("ml-100k")
def _ml100k(path: Path, name: str) -> Interactions:
    """u.data (tab: user item rating timestamp) and u.item (pipe-separated, latin-1, genre flags)."""
    folder = find_folder(path, ("u.data",))
    fields = ("user id", "item id", "rating", "timestamp")
    t = split_lines(open_text(folder / "u.data"), "\t", fields)
    df = typed(t, {"user id": "int", "item id": "int", "rating": "float", "timestamp": "int"})
    check_values(df, "rating", t.text.path, event="rating")
    raw = _ratings(df, "user id", "item id", "rating", "timestamp")
    return build(raw, _ml100k_items(folder), name, "movie")


def _ml100k_items(folder: Path) -> pl.DataFrame | None:
    if not (folder / "u.item").is_file():
        return None  # metadata is optional: titles fall back to ids
    genres = _ML100K_GENRES
    if (folder / "u.genre").is_file():
        g = typed(
            split_lines(open_text(folder / "u.genre"), "|", ("genre", "index")),
            {"genre": "text", "index": "int"},
        )
        genres = tuple(g.sort("index").get_column("genre").to_list())
    fields = ("movie id", "movie title", "release date", "video release date", "IMDb URL", *genres)
    t = split_lines(open_text(folder / "u.item", latin1=True), "|", fields)
    kinds: dict[str, Kind] = {"movie id": "int", "movie title": "text", "release date": "text"}
    kinds |= {g: "int" for g in genres}
    df = typed(t, kinds, optional=("release date", *genres))
    for genre in genres:
        check_allowed(df, genre, (0, 1), t.text.path)
    flags = pl.concat_list([pl.when(pl.col(g) == 1).then(pl.lit(g)) for g in genres]).list.drop_nulls()
    year = pl.coalesce(
        _title_year(pl.col("movie title")),
        pl.col("release date").str.extract(r"(\d{4})\s*$", 1).cast(pl.Int32, strict=False),
    )
    return df.select(meta_row(pl.col("movie id"), pl.col("movie title"), flags, year, "movie"))


def _movies(t: Table) -> pl.DataFrame:
    """movies.dat / movies.csv: id, 'Title (Year)', 'Genre|Genre' (or '(no genres listed)')."""
    mid, title, genres = t.fields
    df = typed(t, {mid: "int", title: "text", genres: "text"}, optional=(genres,))
    split = (
        pl.col(genres)
        .fill_null("")
        .str.split("|")
        .list.eval(pl.element().filter((pl.element() != "") & (pl.element() != "(no genres listed)")))
    )
    return df.select(
        meta_row(pl.col(mid), pl.col(title).str.strip_chars(), split, _title_year(pl.col(title)), "movie")
    )


def _ml_dat_meta(folder: Path) -> pl.DataFrame | None:
    if not (folder / "movies.dat").is_file():
        return None
    text = open_text(folder / "movies.dat", latin1=True)
    return _movies(split_lines(text, "::", ("MovieID", "Title", "Genres")))


def _ratings_dat(path: Path) -> pl.DataFrame:
    t = split_lines(open_text(path), "::", _ML_DAT)
    df = typed(t, {"UserID": "int", "MovieID": "int", "Rating": "float", "Timestamp": "int"})
    check_values(df, "Rating", path, event="rating")
    return _ratings(df, *_ML_DAT)


@register("ml-1m")
def _ml1m(path: Path, name: str) -> Interactions:
    """ratings.dat (UserID::MovieID::Rating::Timestamp) when complete, else the time-ordered pairs file.

    Without ratings.dat, `interactions_all_users.txt` gives every (user, movie) pair in each
    user's time order. It has no timestamps, so file order alone is the order. Partial ratings
    files beside it (`ratings_users_*.dat`, ratings.dat lines of some users) type those users'
    pairs as `rating` events with their values; the other pairs stay untyped.
    """
    folder = find_folder(path, ("ratings.dat", _ML1M_ORDER))
    if (folder / "ratings.dat").is_file():
        raw = _ratings_dat(folder / "ratings.dat")
    else:
        t = split_lines(open_text(folder / _ML1M_ORDER), None, ("UserID", "MovieID"))
        df = typed(t, {"UserID": "int", "MovieID": "int"})
        raw = df.select(ids("UserID", "MovieID"))
        parts = sorted(folder.glob("ratings_users_*.dat"))
        if parts:
            rated = pl.concat([_ratings_dat(p) for p in parts]).select(C.USER, C.ITEM, C.WEIGHT, C.EVENT)
            raw = raw.join(
                rated.unique([C.USER, C.ITEM]), on=[C.USER, C.ITEM], how="left", maintain_order="left"
            )
    return build(raw, _ml_dat_meta(folder), name, "movie")


@register("ml-10m")
def _ml10m(path: Path, name: str) -> Interactions:
    """ml-10M100K/ratings.dat and movies.dat, '::'-separated."""
    folder = find_folder(path, ("ratings.dat",))
    return build(_ratings_dat(folder / "ratings.dat"), _ml_dat_meta(folder), name, "movie")


def ratings_csv_table(path: Path) -> Table:
    """ratings.csv, header checked, as string fields (streamed; the prepared store reads it too)."""
    text = open_text(path)
    check_header(text, ML_CSV, ",")
    return scan_fields(text, ",", ML_CSV, header=True)


def movies_csv_meta(path: Path) -> pl.DataFrame:
    """movies.csv (quoted titles) as item metadata."""
    movies = open_text(path)
    check_header(movies, _MOVIES_CSV, ",")
    return _movies(scan_fields(movies, ",", _MOVIES_CSV, header=True))


@register("ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "ml-latest")
def _ml_csv(path: Path, name: str) -> Interactions:
    """ratings.csv (userId,movieId,rating,timestamp) and movies.csv (quoted titles), streamed."""
    folder = find_folder(path, ("ratings.csv",))
    df = typed(ratings_csv_table(folder / "ratings.csv"), ML_CSV_KINDS)
    check_values(df, "rating", folder / "ratings.csv", event="rating")
    meta = movies_csv_meta(folder / "movies.csv") if (folder / "movies.csv").is_file() else None
    return build(_ratings(df, *ML_CSV), meta, name, "movie")
