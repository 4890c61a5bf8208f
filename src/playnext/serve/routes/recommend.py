"""POST /recommend: top-k items for a user, an anonymous history or a live session, with reasons."""

from __future__ import annotations

from fastapi import APIRouter, Response

from playnext.serve.deps import EngineDep
from playnext.serve.routes.common import ERRORS, StrictJSONRoute, ranked, to_query
from playnext.serve.schemas import RecommendRequest, RecommendResponse

router = APIRouter(tags=["recommend"], route_class=StrictJSONRoute)


@router.post("/recommend", response_model=RecommendResponse, responses=ERRORS)
def recommend(body: RecommendRequest, engine: EngineDep) -> Response:
    """Top-k items, each with a score and the history items that drove it.

    Give `user_id`, `history` and/or `session_id` (their items are combined). Filters restrict
    what may come back; with `exclude_seen` the history itself never does.
    """
    return ranked(engine.recommend_ranked(to_query(body)), engine)
