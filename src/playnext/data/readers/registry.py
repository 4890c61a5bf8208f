"""The table of readers by dataset name; each family module registers its own on import."""

from __future__ import annotations

from collections.abc import Callable

from playnext.data.interactions import Interactions

Reader = Callable[..., Interactions]
"""`reader(path, name, **options)`: the dataset's folder or file, the name it was asked for."""
READERS: dict[str, Reader] = {}


def register(*names: str) -> Callable[[Reader], Reader]:
    """Register a reader under one or more dataset names."""

    def deco(fn: Reader) -> Reader:
        for name in names:
            READERS[name] = fn
        return fn

    return deco
