"""Readers of the original files of public movie, music and game datasets, registered by name.

Each reader takes the files exactly as published (no hand conversion) and returns
`Interactions` in a stable per-user time order: timestamp, ties by position in the file.
They are grouped by family (`movies`, `music`, `games`, and `generic` for any CSV, Parquet or
sequence file), all built from the vectorised checks of `playnext.data.tables`, so bad
input fails as a `DataError` naming the file, the 1-based line and the field.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from playnext.data import download as dl
from playnext.data.interactions import Interactions
from playnext.data.readers import games, generic, movies, music
from playnext.data.readers.registry import READERS
from playnext.errors import ConfigError

FAMILIES = (movies, music, games, generic)
DATASETS: tuple[str, ...] = tuple(
    name for family in FAMILIES for name, fn in READERS.items() if fn.__module__ == family.__name__
)
"""Names `load_dataset` reads from files (plus 'synthetic', which is generated), family by family."""


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
    reader = READERS.get(key)
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
