"""`create_app`: the FastAPI application around a saved model, and `run` to serve it with uvicorn.

    app = create_app("artifacts/demo", Settings(token="s3cret"))
    run(app)                                    # http://127.0.0.1:8000, docs at /docs

The state store is opened and the model (and the text index) loaded in the lifespan, once; the
`ModelHolder` hands routes the current engine through `Depends` and swaps in published models.
`app_from_env` is the factory each of several uvicorn worker processes calls.
"""

from __future__ import annotations

import gc
import importlib.resources
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from playnext.artifact import Artifact
from playnext.errors import PlaynextError, UnknownEventTypeError
from playnext.serve.engine import LazyEncoder, catalog_print
from playnext.serve.errors import Conflict, NotFound, UnknownIds
from playnext.serve.metrics import Metrics
from playnext.serve.routes.admin import router as admin_router
from playnext.serve.routes.common import printable, redact_paths
from playnext.serve.routes.items import router as items_router
from playnext.serve.routes.recommend import router as recommend_router
from playnext.serve.routes.search import router as search_router
from playnext.serve.routes.sessions import router as sessions_router
from playnext.serve.routes.system import router as system_router
from playnext.serve.routes.users import router as users_router
from playnext.serve.settings import Settings
from playnext.serve.swap import ModelHolder
from playnext.state import CatalogPrint, Limits, StateConflict, StateError, StateStore
from playnext.state.store import CATALOG_KEY, DB_FILE
from playnext.text import TextEncoder

log = logging.getLogger("playnext.serve")
WEB = Path(__file__).resolve().parent / "web"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DESCRIPTION = """
Recommendations from a saved playnext model: for a known user, an anonymous history or a live
session; similar items; title and natural-language search; items added at run time.

Ids are the dataset's own (strings or numbers). Unknown ids in the URL path are a 404, unknown ids
in a request body a 422; both name the ids. `k` and history length are bounded (see /health).
"""


def create_app(
    source: str | Path | Artifact | None,
    settings: Settings | None = None,
    *,
    encoder: TextEncoder | None = None,
    start_without_model: bool = False,
    preloaded: tuple[Path, Artifact] | None = None,
    store: StateStore | None = None,
) -> FastAPI:
    """The app for a model folder (loaded at startup), an already loaded `Artifact`, or None with
    `settings.model_root` (serves ROOT/current).

    `encoder` overrides `settings.text_encoder` (tests share one encoder across apps); either
    is loaded only when a catalog has text. `start_without_model`: when neither the model nor
    a last good one loads, start anyway and answer 503 with the reason until one does (each of
    several workers: one that fails its start-up makes uvicorn stop all the others); otherwise
    the start-up fails. `preloaded` (a folder and its loaded artifact) and `store` (open, and
    closed at shutdown) are what `playnext serve` already loaded and checked, used rather than
    loaded or opened again.
    """
    settings = settings if settings is not None else Settings.from_env()
    handed = [preloaded] if preloaded is not None else []  # taken once: a swap frees that model

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        t0 = time.perf_counter()
        scratch: Path | None = None
        if store is not None:
            state = store
        else:
            where, scratch = state_location(source, settings)
            state = StateStore.open(where, limits(settings))
            log.info("serve: state store (%s) opened in %.1f s", state.kind, time.perf_counter() - t0)
        try:
            enc = LazyEncoder(settings.text_encoder, encoder)
            cached = _text_caches(settings.cache_dir)
            t1 = time.perf_counter()
            first = handed.pop() if handed else None
            holder = ModelHolder(
                source, settings, state, enc, start_without_model=start_without_model, preloaded=first
            )
            del first
            if holder.ready:
                _log_engine_steps(holder.engine, time.perf_counter() - t1, cached, settings.cache_dir)
            app.state.holder = holder
            app.state.store = state
            app.state.started = time.time()
            if holder.ready:
                log.info(
                    "model %s with %d items ready in %.1fs; state in %s %s",
                    holder.engine.model.name,
                    holder.engine.n_items,
                    time.perf_counter() - t0,
                    state.kind,
                    state.where,
                )
            else:
                log.error("started without a model (503 until one loads): %s", holder.serving.last_error)
            # the loaded model and catalog live as long as the server: keep the cyclic GC from
            # re-walking them on every full collection (a pause of tens of ms in the latency tail)
            gc.collect()
            gc.freeze()
            holder.start()
            yield
            holder.stop()
            app.state.holder = None
        finally:
            state.close()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    app = FastAPI(
        title="playnext",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own pages load Swagger UI and ReDoc from a CDN: served locally below
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.holder = None
    app.state.started = time.time()
    routers = (
        recommend_router,
        sessions_router,
        items_router,
        users_router,
        search_router,
        system_router,
        admin_router,
    )
    for router in routers:
        app.include_router(router)
    add_offline_docs(app)  # before /static: its assets live under /static/docs
    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.exception_handler(PlaynextError)
    async def playnext_error(request: Request, exc: PlaynextError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, rendered so that it cannot fail itself: the errors echo the input, and
        an input JSON cannot carry (NaN, a lone surrogate) is spelt out instead of a 500."""
        return JSONResponse({"detail": printable(jsonable_encoder(exc.errors()))}, status_code=422)

    app.add_middleware(GuardMiddleware, max_body=settings.max_body_bytes, metrics=app.state.metrics)
    return app


def _text_caches(cache_dir: Path | None) -> set[str]:
    """The text-embedding cache files there now (to tell a cache hit from an encoding run)."""
    if cache_dir is None or not Path(cache_dir).is_dir():
        return set()
    return {p.name for p in Path(cache_dir).glob("text-*.npy")}


def _log_engine_steps(engine: Any, seconds: float, cached_before: set[str], cache_dir: Path | None) -> None:
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
    elif _text_caches(cache_dir) - cached_before:
        how = "encoded, now cached"
    else:
        how = "cache hit"
    if engine.n_texted < len(index):
        how = f"{engine.n_texted:,} with text, {how}"
    log.info("serve: text index of %s items in %.1f s (%s)", f"{len(index):,}", text - faiss, how)
    if index.kind != "exact":
        log.info("serve: %s index of %s items built in %.1f s", index.kind, f"{len(index):,}", faiss)


DOCS_ASSETS = "/static/docs"


def add_offline_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc with their JavaScript, CSS and icon served from this server
    (the `fastapi-offline` package ships them), so the pages work with no Internet access."""
    from fastapi.openapi.docs import (
        get_redoc_html,
        get_swagger_ui_html,
        get_swagger_ui_oauth2_redirect_html,
    )
    from fastapi.responses import HTMLResponse

    assets = Path(str(importlib.resources.files("fastapi_offline").joinpath("static")))
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title="playnext - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_redirect}",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title="playnext - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


# Each domain error's HTTP status, the most specific class first: the one place a status is chosen.
STATUS: tuple[tuple[type[PlaynextError], int], ...] = (
    (NotFound, 404),  # the item, user or session in the URL path
    (Conflict, 409),
    (StateConflict, 409),  # the store refuses an add (id taken, max_cold_items reached)
    (StateError, 503),
    (PlaynextError, 422),  # bad input: unknown ids in the body, limits, filters, event types
)


def error_response(exc: PlaynextError) -> JSONResponse:
    """A domain error as HTTP: its status, `detail`, and what a client can act on (the unknown
    ids, the event types the model knows)."""
    status = next(code for cls, code in STATUS if isinstance(exc, cls))
    # a 503 reaches any client: the reason without the store's location (and no other path)
    detail = redact_paths(exc.reason) if isinstance(exc, StateError) else str(exc)
    body: dict[str, Any] = {"detail": detail}
    if isinstance(exc, UnknownIds):
        body["unknown"] = exc.ids[:100]
    if isinstance(exc, UnknownEventTypeError):
        body["known_event_types"] = list(exc.known)
    if status == 503:
        log.error("%s", exc)
    return JSONResponse(body, status_code=status)


def limits(settings: Settings) -> Limits:
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


def app_from_env() -> FastAPI:
    """The factory each uvicorn worker process calls (`playnext serve --workers N`): everything
    comes from PLAYNEXT_* variables, the model folder from PLAYNEXT_MODEL_DIR. A worker that can
    load no model still starts (503 with the reason), so the other workers keep serving."""
    settings = Settings.from_env()
    model_dir = os.environ.get("PLAYNEXT_MODEL_DIR") or None
    return create_app(model_dir, settings, start_without_model=True)


class GuardMiddleware:
    """Rejects oversized bodies with 413 (by Content-Length, or while streaming) and records
    per-route counts and latency for /metrics."""

    def __init__(self, app: ASGIApp, max_body: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500
        started = False

        async def send_wrapped(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = int(message["status"]), True
            await send(message)

        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise HTTPException(413, f"request body over {self.max_body} bytes")
            return message

        try:
            length = _content_length(scope)
            if length is not None and length > self.max_body:
                await _reply(send_wrapped, 413, f"request body over {self.max_body} bytes")
            elif length == -1:
                await _reply(send_wrapped, 400, "invalid Content-Length header")
            else:
                await self.app(scope, receive_limited, send_wrapped)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or (
                "/static" if scope["path"].startswith("/static/") else "<unmatched>"
            )
            self.metrics.observe(scope["method"], str(template), status, time.perf_counter() - t0)


def _content_length(scope: Scope) -> int | None:
    for k, v in scope.get("headers", []):
        if k == b"content-length":
            try:
                n = int(v)
            except ValueError:
                return -1
            return n if n >= 0 else -1
    return None


async def _reply(send: Send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def run(app: FastAPI, host: str | None = None, port: int | None = None) -> None:
    """Serve with uvicorn (loopback by default: set host to 0.0.0.0 deliberately), with the
    settings' connection limits (`playnext.serve.protocol`)."""
    import uvicorn

    from playnext.serve.protocol import server_options

    settings: Settings = app.state.settings
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port if port is not None else settings.port,
        log_level="info",
        **server_options(settings),
    )
