"""Known users: find one by id, read their stored history (the page shows it beside their picks)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from playnext.serve.deps import EngineDep
from playnext.serve.routes.common import ERRORS, StrictJSONRoute
from playnext.serve.schemas import UserHistory, UserPage

router = APIRouter(prefix="/users", tags=["users"], route_class=StrictJSONRoute)


@router.get("", response_model=UserPage)
def list_users(
    engine: EngineDep,
    query: Annotated[str, Query(max_length=200, description="Case-insensitive part of a user id.")] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> UserPage:
    """Users of the training data whose id contains `query`: the exact id, then ids starting with
    it, then the rest, each in training order. An empty query lists them all."""
    total, users = engine.find_users(query, limit, offset)
    return UserPage.model_validate({"total": total, "offset": offset, "limit": limit, "users": users})


@router.get("/{user_id}/history", response_model=UserHistory, responses=ERRORS)
def user_history(
    user_id: Annotated[str, Path(max_length=200)],
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="The last this many events.")] = 50,
) -> UserHistory:
    """The user's stored history as the model reads it with `user_id` (oldest first), with each
    item's metadata and, for a model trained with event types, each event's type and value."""
    return UserHistory.model_validate(engine.user_history(user_id, limit))
