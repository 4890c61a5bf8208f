"""`create_app`: the FastAPI application around a saved model, and `run` to serve it with uvicorn.

    app = create_app("artifacts/demo", Settings(token="s3cret"))
    run(app)                                    # http://127.0.0.1:8000, docs at /docs

The state store is opened and the model (and the text index) loaded in the lifespan, once; the
`ModelHolder` hands routes the current engine through `Depends` and swaps in published models.
`app_from_env` is the factory each of several uvicorn worker processes calls.
Around it: the request guard (`serve.guard`), where the state store lives and the start-up
log lines (`serve.startup`), the offline /docs pages (`serve.offline_docs`).
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from playnext.artifact import Artifact
from playnext.errors import PlaynextError, UnknownEventTypeError
from playnext.serve.engine import LazyEncoder
from playnext.serve.errors import Conflict, NotFound, UnknownIds
from playnext.serve.guard import GuardMiddleware
from playnext.serve.metrics import Metrics
from playnext.serve.offline_docs import add_offline_docs
from playnext.serve.routes.admin import router as admin_router
from playnext.serve.routes.common import printable, redact_paths
from playnext.serve.routes.items import router as items_router
from playnext.serve.routes.recommend import router as recommend_router
from playnext.serve.routes.search import router as search_router
from playnext.serve.routes.sessions import router as sessions_router
from playnext.serve.routes.system import router as system_router
from playnext.serve.routes.users import router as users_router
from playnext.serve.settings import Settings
from playnext.serve.startup import limits, log_engine_steps, state_location, text_caches
from playnext.serve.swap import ModelHolder
from playnext.state import StateConflict, StateError, StateStore
from playnext.text import TextEncoder

log = logging.getLogger("playnext.serve")
WEB = Path(__file__).resolve().parent / "web"

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
            cached = text_caches(settings.cache_dir)
            t1 = time.perf_counter()
            first = handed.pop() if handed else None
            holder = ModelHolder(
                source, settings, state, enc, start_without_model=start_without_model, preloaded=first
            )
            del first
            if holder.ready:
                log_engine_steps(holder.engine, time.perf_counter() - t1, cached, settings.cache_dir)
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


def app_from_env() -> FastAPI:
    """The factory each uvicorn worker process calls (`playnext serve --workers N`): everything
    comes from PLAYNEXT_* variables, the model folder from PLAYNEXT_MODEL_DIR. A worker that can
    load no model still starts (503 with the reason), so the other workers keep serving."""
    settings = Settings.from_env()
    model_dir = os.environ.get("PLAYNEXT_MODEL_DIR") or None
    return create_app(model_dir, settings, start_without_model=True)


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
