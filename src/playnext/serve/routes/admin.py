"""POST /admin/model: swap in another model folder on every worker (token-protected)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from playnext.errors import ConfigError
from playnext.serve.deps import AnyHolderDep, require_token
from playnext.serve.routes.common import StrictJSONRoute
from playnext.serve.schemas import ModelStatus, SwapOut, SwapRequest

router = APIRouter(
    prefix="/admin", tags=["admin"], dependencies=[Depends(require_token)], route_class=StrictJSONRoute
)


@router.post(
    "/model",
    response_model=SwapOut,
    responses={
        401: {"description": "No bearer token."},
        403: {"description": "Wrong token."},
        422: {"description": "The folder does not load as a model: refused, the old one keeps serving."},
    },
)
async def swap_model(body: SwapRequest, holder: AnyHolderDep) -> SwapOut:
    """Load `model_dir` on this worker (requests keep being answered meanwhile), publish it (with
    a model root: as a new, unique version), and only then switch to it; every other worker
    switches within `swap_poll_seconds`. A folder that fails to load is refused with the reason;
    nothing changes. A worker that had no model gets this one."""
    try:
        engine = await run_in_threadpool(holder.admin_swap, body.model_dir)
    except Exception as e:
        raise ConfigError(f"model refused, still serving {holder.serving.path}: {e}") from None
    return SwapOut(model=engine.model.name, serving=ModelStatus.model_validate(vars(holder.serving)))
