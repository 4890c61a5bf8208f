"""`ModelHolder`: the engine every request uses, replaced between requests when a new model is published.

A request takes `holder.engine` once (a FastAPI dependency) and keeps that reference, so requests
in flight finish on the model they started with while the next ones get the new one. A new model
is loaded and its engine built in the background; one that fails to load is refused, the old one
keeps serving and the reason is in /health and the log. Two ways to publish, both seen by every
worker:

- `--model-root ROOT`: re-point `ROOT/current` (`playnext publish`, `playnext retrain --publish`);
  each worker polls the link every `swap_poll_seconds`.
- `POST /admin/model` (token): the worker that gets it loads the folder first and answers 422
  if it cannot; on success it publishes to the root (with a root) or writes the folder into the
  state store under this deployment's key (without one), where the other workers poll it.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from playnext.artifact import Artifact, current_model, publish
from playnext.errors import PlaynextError
from playnext.serve.engine import Engine
from playnext.serve.settings import Settings
from playnext.state import StateStore
from playnext.text import TextEncoder

log = logging.getLogger("playnext.serve")


@dataclass
class Serving:
    path: str | None
    loaded_at: float
    swaps: int = 0
    last_error: str | None = None


class ModelHolder:
    """Holds the current `Engine`; a watcher thread swaps in newly published models."""

    def __init__(
        self,
        source: str | Path | Artifact | None,
        settings: Settings,
        store: StateStore,
        encoder: TextEncoder | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.encoder = encoder
        self.root = Path(settings.model_root) if settings.model_root is not None else None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if source is None and self.root is None:
            raise PlaynextError("give a model folder or a model root")
        # the store key under which admin swaps of this deployment are shared between workers
        first: str | Path | Artifact
        if isinstance(source, Artifact):
            self.key, first = "serve.model:<in-memory>", source
        elif self.root is not None:
            self.key, first = f"serve.model:{self.root.resolve()}", current_model(self.root)
        else:
            assert source is not None
            first = Path(source).resolve()
            self.key = f"serve.model:{first}"
        self._seen_meta = store.get_meta(self.key)
        wanted = self._seen_meta  # an earlier admin swap of this same deployment (model-dir mode)
        if isinstance(first, Path) and self.root is None and isinstance(wanted, dict) and wanted.get("path"):
            first = Path(wanted["path"])
        self._seen_link = str(first) if self.root is not None else None
        self.engine = self._build(first)
        path = None if isinstance(first, Artifact) else str(first)
        self.serving = Serving(path=path, loaded_at=time.time())

    # ---- loading and swapping ----------------------------------------------------------------
    def _build(self, source: str | Path | Artifact) -> Engine:
        artifact = source if isinstance(source, Artifact) else Artifact.load(source)
        return Engine(artifact, self.settings, self.store, self.encoder)

    def swap(self, path: str | Path) -> Engine:
        """Load `path` and switch to it; on failure keep the old engine and re-raise the reason."""
        path = str(Path(path).resolve())
        t0 = time.perf_counter()
        try:
            new = self._build(path)
        except Exception as e:  # any failure to load refuses the model, never the server
            reason = f"{path}: {e}"
            with self._lock:
                self.serving.last_error = reason
            log.error("model refused, still serving %s: %s", self.serving.path, reason)
            raise
        with self._lock:
            old, self.engine = self.engine, new
            self.serving = Serving(path, time.time(), self.serving.swaps + 1, None)
        log.info(
            "swapped in %s (%s, %d items) in %.1fs",
            path,
            new.model.name,
            new.n_items,
            time.perf_counter() - t0,
        )
        # an engine holds no reference cycles, so the old one is freed by reference counting as
        # soon as its last request lets go (frozen or not); freezing the new one keeps full
        # collections from re-walking it. A gc.collect() here would hold the GIL for ~100 ms
        # of other requests' time.
        del old
        gc.freeze()
        return new

    def admin_swap(self, model_dir: str) -> Engine:
        """The admin endpoint: load here first (raising the reason), then publish for every worker."""
        engine = self.swap(model_dir)
        assert self.serving.path is not None
        if self.root is not None:
            version = publish(self.serving.path, self.root)
            with self._lock:
                self._seen_link = str(version.resolve())
                self.serving.path = self._seen_link
        else:
            value = {"path": self.serving.path, "ts": time.time()}
            self.store.set_meta(self.key, value)
            with self._lock:
                self._seen_meta = value
        return engine

    # ---- the watcher ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.settings.swap_poll_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="playnext-swap", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.swap_poll_seconds):
            try:
                self.poll()
            except Exception as e:  # the watcher must outlive a bad model or a store hiccup
                log.warning("model watcher: %s", e)

    def poll(self) -> bool:
        """One look at the link and the store; True when a new model was swapped in."""
        target: str | None = None
        if self.root is not None:
            link = self.root / "current"
            now = str(link.resolve()) if link.exists() else None
            if now is not None and now != self._seen_link:
                self._seen_link = target = now
        else:
            meta = self.store.get_meta(self.key)
            if meta != self._seen_meta:
                self._seen_meta = meta
                if isinstance(meta, dict) and meta.get("path") and meta["path"] != self.serving.path:
                    target = str(meta["path"])
        if target is None:
            return False
        try:
            self.swap(target)
        except Exception:
            return False  # refused: reported in serving.last_error, tried again when it changes
        return True
