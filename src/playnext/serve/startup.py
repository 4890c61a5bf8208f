"""What the server does at start-up before it serves: where the state store lives and how it is
opened (`state_location`, `open_state`, `limits`), and one log line per step of building the
engine (`log_engine_steps`: the model, the text index, faiss)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from playnext.artifact import Artifact
from playnext.errors import PlaynextError
from playnext.serve.engine import catalog_print
from playnext.serve.settings import Settings
from playnext.state import CatalogPrint, Limits, StateStore
from playnext.state.store import CATALOG_KEY, DB_FILE

log = logging.getLogger("playnext.serve")


def limits(settings: Settings) -> Limits:
    """The state store's bounds, from the settings."""
    return Limits(
        max_sessions=settings.max_sessions,
        max_session_events=settings.max_session_events,
        max_cold_items=settings.max_cold_items,
        max_log_events=settings.max_log_events,
    )


def open_state(where: str, settings: Settings, model: Artifact | Path) -> StateStore:
    """What `playnext serve` checks before any worker starts (a `StateError`: one line, exit 2):
    the store opens, its schema is exactly playnext's, and it belongs to this model's catalog.
    Returns it open (one worker serves on it; several open their own)."""
    store = StateStore.open(where, limits(settings))
    try:
        store.bind_catalog(catalog_print(model))
    except BaseException:
        store.close()
        raise
    return store


def state_location(source: str | Path | Artifact | None, settings: Settings) -> tuple[str, Path | None]:
    """Where the state store lives, and a scratch folder to delete at shutdown (only for a model
    given in code with no `state`: its sessions need not outlive the process).

    By default each model folder has its own, `state/<folder name>/` beside it (a model root,
    one lineage, has `ROOT/state/`): two models side by side once shared `state/`, so a session
    of one was replayed as ids of the other. That older shared store is kept for the model of
    its catalog (its sessions stay), and named for any other."""
    if settings.state is not None:
        return settings.state, None
    if settings.model_root is not None:
        return str(Path(settings.model_root) / "state"), None
    if isinstance(source, Artifact) or source is None:
        scratch = Path(tempfile.mkdtemp(prefix="playnext-state-"))
        return str(scratch), scratch
    model = Path(source).resolve()
    shared, own = model.parent / "state", model.parent / "state" / model.name
    if (shared / DB_FILE).is_file() and not own.exists():
        if _records_catalog_of(shared / DB_FILE, model):
            log.info("serve: state store %s (the earlier shared default; it records this catalog)", shared)
            return str(shared), None
        log.warning("serve: %s (the earlier shared default) is not of this catalog: using %s", shared, own)
    return str(own), None


def _records_catalog_of(db: Path, model: Path) -> bool:
    """Whether a SQLite state store records `model`'s catalog (read-only; any doubt is a no)."""
    import json
    import sqlite3

    try:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT value FROM playnext_meta WHERE key = ?", (CATALOG_KEY,)).fetchone()
        finally:
            con.close()
        return row is not None and CatalogPrint.from_json(json.loads(row[0])).matches(catalog_print(model))
    except (sqlite3.Error, TypeError, ValueError, PlaynextError):
        return False


def text_caches(cache_dir: Path | None) -> set[str]:
    """The text-embedding cache files there now (to tell a cache hit from an encoding run)."""
    if cache_dir is None or not Path(cache_dir).is_dir():
        return set()
    return {p.name for p in Path(cache_dir).glob("text-*.npy")}


def log_engine_steps(engine: Any, seconds: float, cached_before: set[str], cache_dir: Path | None) -> None:
    """One start-up line per step of building the engine: the model, the text index, faiss."""
    index = engine.text_index
    text = engine.text_seconds if index is not None else 0.0
    model = seconds - text - engine.encoder_seconds
    log.info("serve: model %s loaded in %.1f s", engine.model.name, max(model, 0.0))
    if index is None:
        return
    faiss = index.build_seconds if index.kind != "exact" else 0.0
    if cache_dir is None:
        how = "no cache"
    elif text_caches(cache_dir) - cached_before:
        how = "encoded, now cached"
    else:
        how = "cache hit"
    if engine.n_texted < len(index):
        how = f"{engine.n_texted:,} with text, {how}"
    log.info("serve: text index of %s items in %.1f s (%s)", f"{len(index):,}", text - faiss, how)
    if index.kind != "exact":
        log.info("serve: %s index of %s items built in %.1f s", index.kind, f"{len(index):,}", faiss)
