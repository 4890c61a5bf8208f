"""GET /health, GET /metrics and the web page at /."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse

from playnext.serve.deps import EngineDep, MetricsDep
from playnext.serve.schemas import Health

router = APIRouter(tags=["system"])
INDEX_HTML = Path(__file__).resolve().parent.parent / "web" / "index.html"


@router.get("/health", response_model=Health)
def health(engine: EngineDep, request: Request) -> Health:
    return Health(
        status="ok",
        model=engine.model.name,
        n_users=len(engine.artifact.users),
        n_items=engine.n_items,
        n_cold_items=engine.n_cold,
        sessions=len(engine.sessions),
        text_encoder=engine.encoder.name if engine.encoder is not None else None,
        text_index=engine.text_index.kind if engine.text_index is not None else None,
        uptime_seconds=time.time() - request.app.state.started,
    )


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
