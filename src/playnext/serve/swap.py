"""`ModelHolder`: the engine every request uses, replaced between requests when a new model is published.

A request takes `holder.engine` once (a FastAPI dependency) and keeps that reference, so requests
in flight finish on the model they started with while the next ones get the new one. A new model
is loaded and its engine built in the background; one that fails to load is refused, the old one
keeps serving and the reason is in /health (`serving.last_error`) and the log. Two ways to
publish, both seen by every worker:

- `--model-root ROOT`: re-point `ROOT/current` (`playnext publish`, `playnext retrain --publish`,
  or `ln -sfn` by hand); each worker polls the link every `swap_poll_seconds`.
- `POST /admin/model` (token): the worker that gets it loads the folder first and answers 422
  if it cannot; on success it publishes it (with a root: copied to a new, unique version, loaded
  from there, then `current` re-pointed; without one: the folder written into the state store
  under this deployment's key) and only then switches itself. Whatever races, every worker ends
  on what `current` (or the store key) names: each one's poll compares it with what it serves.

A worker that cannot load what `current` names when it starts (a respawned worker after a crash,
while `current` points at a broken folder or at nothing) serves the last model it can load: the
one the deployment last served (recorded in the state store), else the newest version that
loads. A worker that loads nothing at all starts without a model when told to
(`start_without_model`, the multi-worker factory: a worker that fails its start-up makes
uvicorn stop every other one) and answers 503 with the reason until a model loads.
"""

from __future__ import annotations

import gc
import logging
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from playnext.artifact import Artifact, point_current, stage_version
from playnext.errors import PlaynextError
from playnext.serve import published
from playnext.serve.engine import Engine, LazyEncoder
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


class NoModel(PlaynextError):
    """This worker has no model to serve (none it could load); the reason is the message."""


class ModelHolder:
    """Holds the current `Engine`; a watcher thread swaps in newly published models."""

    def __init__(
        self,
        source: str | Path | Artifact | None,
        settings: Settings,
        store: StateStore,
        encoder: TextEncoder | LazyEncoder | None,
        *,
        start_without_model: bool = False,
        preloaded: tuple[Path, Artifact] | None = None,
    ) -> None:
        """`preloaded`: a folder already loaded (and checked) by `playnext serve`, used for the
        first build if it is still what this deployment serves, instead of loading it again."""
        self.settings = settings
        self.store = store
        self.encoder = encoder
        self.root = Path(settings.model_root).resolve() if settings.model_root is not None else None
        self._engine: Engine | None = None
        self.serving = Serving(path=None, loaded_at=time.time())
        self._lock = threading.Lock()  # guards `serving` and `_engine` together
        self._swapping = threading.RLock()  # one decide-load-install at a time (watcher, admin)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen_link: tuple[str, bool] | None = None  # (target, exists) of `current` last acted on
        self._source: Path | None = None
        self._preloaded = preloaded
        if source is None and self.root is None:
            raise PlaynextError("give a model folder or a model root")
        # the store key under which admin swaps of this deployment are shared between workers
        if isinstance(source, Artifact):
            self.key = "serve.model:<in-memory>"
            self._install(Engine(source, settings, store, encoder), None)
            self._seen_meta = store.get_meta(self.key)
            return
        if self.root is not None:
            self.key = f"serve.model:{self.root}"
        else:
            assert source is not None
            self._source = Path(source).resolve()
            self.key = f"serve.model:{self._source}"
        self._seen_meta = store.get_meta(self.key)
        with self._swapping:
            if not self._start() and not start_without_model:
                raise NoModel(self.serving.last_error or "no model loaded")

    # ---- what requests see -------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._engine is not None

    @property
    def engine(self) -> Engine:
        engine = self._engine
        if engine is None:
            raise NoModel(f"no model loaded: {self.serving.last_error}")
        return engine

    # ---- loading and swapping ----------------------------------------------------------------
    def _build(self, source: str | Path | Artifact) -> Engine:
        preloaded, self._preloaded = self._preloaded, None  # once: later builds read the folder anew
        if isinstance(source, Artifact):
            artifact = source
        elif preloaded is not None and Path(source).resolve() == preloaded[0].resolve():
            artifact = preloaded[1]
        else:
            artifact = Artifact.load(source)
        return Engine(artifact, self.settings, self.store, self.encoder)

    def _install(self, new: Engine, path: str | None, error: str | None = None) -> None:
        with self._lock:
            old, self._engine = self._engine, new
            swaps = self.serving.swaps + (old is not None)
            self.serving = Serving(path, time.time(), swaps, error)
        # an engine holds no reference cycles, so the old one is freed by reference counting as
        # soon as its last request lets go (frozen or not); freezing the new one keeps full
        # collections from re-walking it. A gc.collect() here would hold the GIL for ~100 ms
        # of other requests' time.
        del old
        gc.freeze()
        if self.root is not None and path is not None:
            published.remember_good(self.root, self.store, path)

    def _refuse(self, reason: str) -> None:
        """Report a model that will not be served; log it once per reason."""
        with self._lock:
            changed = self.serving.last_error != reason
            self.serving.last_error = reason
        if changed:
            log.error("model refused, still serving %s: %s", self.serving.path, reason)

    def _name(self, path: str | Path) -> str:
        return published.name(self.root, path)

    def swap(self, path: str | Path) -> Engine:
        """Load `path` and switch to it; on failure keep the old engine and re-raise the reason."""
        path = str(Path(path).resolve())
        t0 = time.perf_counter()
        with self._swapping:
            try:
                new = self._build(path)
            except Exception as e:  # any failure to load refuses the model, never the server
                self._refuse(f"{self._name(path)}: {e}")
                raise
            self._install(new, path)
        log.info(
            "swapped in %s (%s, %d items) in %.1fs",
            path,
            new.model.name,
            new.n_items,
            time.perf_counter() - t0,
        )
        return new

    def admin_swap(self, model_dir: str) -> Engine:
        """The admin endpoint: load first (raising the reason), publish for every worker, and only
        then switch here. With a root the folder is copied to a new version and loaded from
        there, so what every worker loads is exactly what this one checked."""
        src = Path(model_dir).resolve()
        with self._swapping:
            if self.root is None:
                engine = self._load_or_refuse(src)
                value = {"path": str(src), "ts": time.time(), "id": uuid.uuid4().hex}
                self.store.set_meta(self.key, value)  # raises: nothing has changed anywhere
                self._install(engine, str(src))
                self._seen_meta = value
                return engine
            try:
                version = stage_version(src, self.root)
            except Exception as e:
                self._refuse(f"{src}: {e}")
                raise
            try:
                engine = self._load_or_refuse(version, shown=src)
                point_current(self.root, version)
            except BaseException:
                shutil.rmtree(version, ignore_errors=True)  # never pointed at: nobody sees it
                raise
            self._install(engine, str(version))
            self._seen_link = (str(version), True)
            log.info("published %s as %s", src, self._name(version))
            return engine

    def _load_or_refuse(self, path: Path, shown: Path | None = None) -> Engine:
        try:
            return self._build(path)
        except Exception as e:
            self._refuse(f"{shown or path}: {e}")
            raise

    # ---- starting, and what a worker falls back on ---------------------------------------------
    def _start(self) -> bool:
        """Load what this deployment serves now, else the last good model; False when nothing
        loads (the reason in `serving.last_error`)."""
        wanted, reason = self._wanted()
        tried: set[str] = set()
        if wanted is not None:
            tried.add(wanted)
            try:
                self._install(self._build(wanted), wanted)
                return True
            except Exception as e:
                reason = f"{self._name(wanted)}: {e}"
        # with a root: the last good version, then the newest; without: the folder it started with
        fallbacks = [str(self._source)] if self.root is None else published.fallbacks(self.root, self.store)
        for candidate in fallbacks:
            if candidate in tried:
                continue
            tried.add(candidate)
            try:
                engine = self._build(candidate)
            except Exception as e:  # logged once in the reason below when nothing loads
                log.debug("fallback %s does not load either: %s", self._name(candidate), e)
                continue
            note = f"{reason}; serving the last good model, {self._name(candidate)}"
            self._install(engine, candidate, note)
            log.error("%s", note)
            return True
        self._refuse(reason or "no model to load")
        return False

    def _wanted(self) -> tuple[str | None, str | None]:
        """The folder this deployment should serve now, or None and why there is none."""
        if self.root is None:
            meta = self._seen_meta  # an earlier admin swap of this same deployment
            if isinstance(meta, dict) and meta.get("path"):
                return str(meta["path"]), None
            return str(self._source), None
        target, exists = published.link(self.root)
        self._seen_link = (target, exists)
        if not exists:
            return None, published.dangling(self.root, target)
        return target, None

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
        with self._swapping:
            if self._engine is None:  # nothing served yet: try again every time
                self._seen_meta = self.store.get_meta(self.key) if self.root is None else None
                return self._start()
            if self.root is not None:
                return self._poll_link()
            meta = self.store.get_meta(self.key)
            if meta == self._seen_meta:
                return False
            self._seen_meta = meta
            if not (isinstance(meta, dict) and meta.get("path")) or meta["path"] == self.serving.path:
                return False
            return self._try_swap(str(meta["path"]))

    def _poll_link(self) -> bool:
        assert self.root is not None
        target, exists = published.link(self.root)
        if (target, exists) == self._seen_link:
            return False
        self._seen_link = (target, exists)
        if not exists:
            self._refuse(published.dangling(self.root, target))
            return False
        if target == self.serving.path:  # back to what this worker serves: nothing to load
            with self._lock:
                self.serving.last_error = None
            return False
        return self._try_swap(target)

    def _try_swap(self, target: str) -> bool:
        try:
            self.swap(target)
        except Exception:
            return False  # refused: reported in serving.last_error, tried again when it changes
        return True
