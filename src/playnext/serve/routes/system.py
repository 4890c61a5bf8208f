"""GET /health, GET /metrics and the web page at /."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse

from playnext.data.events import describe
from playnext.serve.deps import AuthorizedDep, HolderDep, MetricsDep
from playnext.serve.routes.common import redact_paths
from playnext.serve.schemas import EventTypeOut, Health, ModelStatus
from playnext.state import StateError

router = APIRouter(tags=["system"])
log = logging.getLogger("playnext.serve")
INDEX_HTML = Path(__file__).resolve().parent.parent / "web" / "index.html"
# /health's own threads: writes waiting on the store's lock can fill the thread pool every other
# endpoint shares, and /health must answer (503, why) while they wait
HEALTH_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="playnext-health")


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"description": "The state store is unusable; `status` says why."}},
)
async def health(holder: HolderDep, request: Request, authorized: AuthorizedDep) -> Any:
    """200 while the model serves and the state store passes its probe (the file is the one
    opened, a read, a rolled-back write, room on the disk); 503 with the reason when it does not.
    File paths only with the token (`Authorization: Bearer …`); otherwise their last parts."""
    engine = holder.engine
    store = engine.store
    status, sessions = "ok", -1
    try:
        sessions = await asyncio.get_running_loop().run_in_executor(HEALTH_THREADS, store.check)
    except StateError as e:
        status = e.reason
        log.error("/health: %s", e)
    serving = ModelStatus.model_validate(vars(holder.serving))
    if not authorized:
        name = Path(serving.path).name if serving.path else None
        last = redact_paths(serving.last_error) if serving.last_error else None
        serving = serving.model_copy(update={"path": name, "last_error": last})
    body = Health(
        status=status if authorized else redact_paths(status),
        model=engine.model.name,
        serving=serving,
        store=f"{store.kind} {store.where}" if authorized else store.kind,
        pid=os.getpid(),
        n_users=len(engine.artifact.users),
        n_items=engine.n_items,
        n_cold_items=engine.n_cold,
        cold_live_weight=engine.live_weight,
        sessions=sessions,
        text_encoder=engine.encoder.name if engine.encoder is not None else None,
        text_index=engine.text_index.kind if engine.text_index is not None else None,
        request_time=engine.model.uses_request_time,
        event_types=[EventTypeOut.model_validate(t) for t in describe(engine.event_types)],
        uptime_seconds=time.time() - request.app.state.started,
    )
    if status != "ok":
        return JSONResponse(body.model_dump(), status_code=503)
    return body


@router.get("/metrics", response_model=None, responses={200: {"content": {"text/plain": {}}}})
def metrics(
    m: MetricsDep,
    format: Annotated[Literal["prometheus", "json"], Query()] = "prometheus",
) -> Any:
    """Request counts per route and status, latency histogram buckets (Prometheus text or JSON)."""
    if format == "json":
        return m.as_json()
    return PlainTextResponse(m.prometheus(), media_type="text/plain; version=0.0.4")


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(INDEX_HTML, media_type="text/html")
