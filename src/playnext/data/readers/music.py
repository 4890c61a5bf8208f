"""Last.fm (HetRec 2011): play counts per (user, artist), dated by the user's first tag on the artist."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from playnext.data.events import check_values
from playnext.data.interactions import META_SCHEMA, Columns, Interactions
from playnext.data.readers.common import build, find_folder, ids, meta_row
from playnext.data.readers.registry import register
from playnext.data.tables import LINE, check_header, open_text, split_lines, typed
from playnext.errors import ConfigError, DataError

C = Columns
_TAGGED = ("userID", "artistID", "tagID", "day", "month", "year")


def _tag_events(path: Path) -> pl.DataFrame:
    """user_taggedartists.dat as (user, artist, tag, timestamp = the day's 00:00 UTC)."""
    text = open_text(path)
    check_header(text, _TAGGED, "\t")
    df = typed(split_lines(text, "\t", _TAGGED, header=True), dict.fromkeys(_TAGGED, "int"))
    day = pl.format("{}-{}-{}", "year", "month", "day").str.to_date("%Y-%m-%d", strict=False)
    df = df.with_columns((day.cast(pl.Int64) * 86_400).alias(C.TIMESTAMP))
    bad = df.get_column(C.TIMESTAMP).is_null().arg_true()
    if len(bad):
        r = df.row(int(bad[0]), named=True)
        raise DataError(
            f"not a valid date: day {r['day']}, month {r['month']}, year {r['year']}",
            path=path,
            line=r[LINE],
            field="day",
        )
    return df


def _artists(folder: Path, events: pl.DataFrame | None) -> pl.DataFrame | None:
    """artists.dat names; genres = the artist's 3 most used tags (ties: lower tag id)."""
    if not (folder / "artists.dat").is_file():
        return None
    fields = ("id", "name", "url", "pictureURL")
    text = open_text(folder / "artists.dat", latin1=True)
    check_header(text, fields, "\t")
    df = typed(split_lines(text, "\t", fields, header=True), {"id": "int", "name": "text"})
    meta = df.select(meta_row(pl.col("id"), pl.col("name"), None, None, "music"))
    if events is None or not (folder / "tags.dat").is_file():
        return meta
    tags_text = open_text(folder / "tags.dat", latin1=True)
    check_header(tags_text, ("tagID", "tagValue"), "\t")
    tags = typed(
        split_lines(tags_text, "\t", ("tagID", "tagValue"), header=True),
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


@register("lastfm-2k")
def _lastfm(path: Path, name: str, *, events: str = "plays") -> Interactions:
    """HetRec 2011 Last.fm: one interaction per (user, artist) with weight = play count.

    The play counts carry no time. A pair is dated by the user's first tag on that artist in
    user_taggedartists.dat (day precision, UTC), so sequences follow a real order. Undated
    pairs get timestamp 0: they come before the dated ones, in file order. So the plays hold no
    repeated item. With `events="tags"`, the tag assignments themselves are the events (several
    tags of one artist on one day are several events); with `events="tag-days"`, one event per
    day a user tagged an artist: a return to an artist on a later day is a repeat, which is what
    the repeat-aware protocol (`--repeats`) measures on this log.
    """
    if events not in ("plays", "tags", "tag-days"):
        raise ConfigError(f"lastfm-2k: events must be 'plays', 'tags' or 'tag-days', got {events!r}")
    tagged_file = "user_taggedartists.dat"
    folder = find_folder(path, ("user_artists.dat",) if events == "plays" else (tagged_file,))
    by_tags = events in ("tags", "tag-days")
    tagged = _tag_events(folder / tagged_file) if by_tags or (folder / tagged_file).is_file() else None
    if tagged is not None and by_tags:
        if events == "tag-days":
            tagged = tagged.unique(["userID", "artistID", C.TIMESTAMP], keep="first", maintain_order=True)
        raw = tagged.select(*ids("userID", "artistID"), C.TIMESTAMP, pl.lit("tag").alias(C.EVENT))
    else:
        text = open_text(folder / "user_artists.dat")
        fields = ("userID", "artistID", "weight")
        check_header(text, fields, "\t")
        plays = typed(
            split_lines(text, "\t", fields, header=True),
            {"userID": "int", "artistID": "int", "weight": "float"},
        )
        check_values(plays, "weight", text.path, event="play")  # a play count is never negative
        if tagged is not None:
            first = tagged.group_by("userID", "artistID").agg(pl.col(C.TIMESTAMP).min())
            plays = plays.join(first, on=["userID", "artistID"], how="left", maintain_order="left")
        else:
            plays = plays.with_columns(pl.lit(None, dtype=pl.Int64).alias(C.TIMESTAMP))
        raw = plays.select(
            *ids("userID", "artistID"),
            pl.col(C.TIMESTAMP).fill_null(0),
            pl.col("weight").cast(pl.Float32).alias(C.WEIGHT),
            pl.lit("play").alias(C.EVENT),
        )
    return build(raw, _artists(folder, tagged), name, "music")
