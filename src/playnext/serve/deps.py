"""FastAPI dependencies: the engine and settings live on app.state (set in the lifespan), so tests
can override them with `app.dependency_overrides`. They only read attributes, so they are
`async`: a sync one needs a thread of the pool that writes waiting on the store's lock can fill,
and /health must answer while they wait."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from playnext.serve.engine import Engine
from playnext.serve.metrics import Metrics
from playnext.serve.routes.common import redact_paths
from playnext.serve.settings import Settings
from playnext.serve.swap import ModelHolder

_bearer = HTTPBearer(auto_error=False, description="The server's token (settings.token / PLAYNEXT_TOKEN).")


async def get_any_holder(request: Request) -> ModelHolder:
    """The holder, whether or not it has a model yet (the admin swap can give it one)."""
    holder: ModelHolder | None = getattr(request.app.state, "holder", None)
    if holder is None:  # only when the app is used without its lifespan
        raise HTTPException(503, "model not loaded yet")
    return holder


async def get_holder(request: Request) -> ModelHolder:
    """The holder of a worker that serves a model; 503 with the reason on a worker that could
    load none (it keeps trying; the other workers serve meanwhile)."""
    holder = await get_any_holder(request)
    if not holder.ready:  # the reason without paths: any client reads it
        raise HTTPException(503, redact_paths(f"no model loaded: {holder.serving.last_error}"))
    return holder


async def get_engine(request: Request) -> Engine:
    """The engine at the start of the request: a swap during it does not change it."""
    return (await get_holder(request)).engine


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def require_token(
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> None:
    """`Authorization: Bearer <token>`: 401 when missing, 403 when wrong or when no token is configured."""
    if creds is None:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    if settings.token is None:
        raise HTTPException(403, "writes are disabled: start the server with a token (PLAYNEXT_TOKEN)")
    if not hmac.compare_digest(creds.credentials.encode(), settings.token.encode()):
        raise HTTPException(403, "invalid token")


async def is_authorized(
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> bool:
    """Whether the request carries the server's token (for answers that show more with it)."""
    if creds is None or settings.token is None:
        return False
    return hmac.compare_digest(creds.credentials.encode(), settings.token.encode())


EngineDep = Annotated[Engine, Depends(get_engine)]
AuthorizedDep = Annotated[bool, Depends(is_authorized)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
AnyHolderDep = Annotated[ModelHolder, Depends(get_any_holder)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
