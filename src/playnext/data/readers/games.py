"""Steam (steam-200k): purchases and hours played per (user, game); items are game titles."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from playnext.data.events import check_values
from playnext.data.interactions import Columns, Interactions
from playnext.data.readers.common import build, find_folder, ids, meta_row
from playnext.data.readers.registry import register
from playnext.data.tables import Kind, check_allowed, open_text, scan_fields, typed
from playnext.errors import ConfigError

C = Columns


@register("steam-200k")
def _steam(path: Path, name: str, *, events: str = "pairs") -> Interactions:
    """steam-200k.csv: user,"game",purchase|play,hours-or-1.0,0; items are game titles.

    By default there is one interaction per (user, game), placed where the pair first appears.
    Its weight is the hours played (0 if never played) and its event is "play" or "purchase".
    `events="all"` keeps all 200k rows: weight = the value and event = the behaviour.
    """
    if events not in ("pairs", "all"):
        raise ConfigError(f"steam-200k: events must be 'pairs' or 'all', got {events!r}")
    file = path if path.is_file() else find_folder(path, ("steam-200k.csv",)) / "steam-200k.csv"
    fields = ("user_id", "game_title", "behavior", "value", "unused")
    t = scan_fields(open_text(file), ",", fields, header=False)
    kinds: dict[str, Kind] = {"user_id": "int", "game_title": "text", "behavior": "id", "value": "float"}
    df = typed(t, kinds)
    check_allowed(df, "behavior", ("purchase", "play"), file)
    check_values(df, "value", file, event_field="behavior")  # hours are never negative
    df = df.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(C.POSITION))
    play = pl.col("behavior") == "play"
    if events == "all":
        raw = df.select(
            *ids("user_id", "game_title"),
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
                *ids("user_id", "game_title"),
                C.POSITION,
                C.WEIGHT,
                pl.when("_played").then(pl.lit("play")).otherwise(pl.lit("purchase")).alias(C.EVENT),
            )
        )
    titles = raw.select(pl.col(C.ITEM).unique(maintain_order=True))
    meta = titles.select(meta_row(pl.col(C.ITEM), pl.col(C.ITEM), None, None, "game"))
    return build(raw, meta, name, "game")
