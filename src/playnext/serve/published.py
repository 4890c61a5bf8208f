"""What a model root publishes, as a worker reads it: where `ROOT/current` points (and why it
leads nowhere), the version this deployment last served (recorded in the state store), and the
versions to fall back on when neither loads. `ModelHolder` (serve/swap.py) decides what to load."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from playnext.artifact import CURRENT, VERSIONS
from playnext.state import StateStore

log = logging.getLogger("playnext.serve")

FALLBACK_TRIES = 5  # versions tried, newest first, when neither `current` nor the last good loads


def good_key(root: Path) -> str:
    """The state-store key of the version this deployment last served."""
    return f"serve.good:{root}"


def name(root: Path | None, path: str | Path) -> str:
    """A folder as an operator names it: relative to the root when inside it."""
    p = Path(path)
    if root is not None and p.is_relative_to(root):
        return str(p.relative_to(root))
    return str(p)


def link(root: Path) -> tuple[str, bool]:
    """Where `ROOT/current` points (resolved, whether or not it exists), and whether it does."""
    link = root / CURRENT
    return str(link.resolve()), link.is_dir()


def dangling(root: Path, target: str) -> str:
    """Why `ROOT/current` names no model folder."""
    link = root / CURRENT
    if not link.is_symlink() and not link.exists():
        return f"no '{CURRENT}' in the model root (publish one: playnext publish DIR --root ROOT)"
    shown = os.readlink(link) if link.is_symlink() else name(root, target)
    return f"{CURRENT} → {shown}: no such model folder"


def fallbacks(root: Path, store: StateStore) -> list[str]:
    """Folders to serve instead: the last good one recorded, then versions newest first."""
    out: list[str] = []
    try:
        good = store.get_meta(good_key(root))
    except Exception as e:  # the store's own trouble is reported by /health
        log.warning("cannot read the last good model: %s", e)
        good = None
    if isinstance(good, dict) and good.get("version"):
        out.append(str(root / VERSIONS / str(good["version"])))
    versions = root / VERSIONS
    found: list[tuple[float, str]] = []
    for p in versions.iterdir() if versions.is_dir() else ():
        try:
            if p.is_dir() and not p.name.startswith("."):  # not a publish in progress
                found.append((p.stat().st_mtime, str(p)))
        except OSError:  # removed meanwhile
            continue
    return out + [path for _, path in sorted(found, reverse=True)[:FALLBACK_TRIES]]


def remember_good(root: Path, store: StateStore, path: str) -> None:
    """Record the version a worker serves, for a worker that must fall back on it."""
    p = Path(path)
    if p.parent != root / VERSIONS:
        return
    try:
        if store.get_meta(good_key(root)) != {"version": p.name}:
            store.set_meta(good_key(root), {"version": p.name})
    except Exception as e:
        log.warning("cannot record the last good model: %s", e)
