"""POST /search: natural-language search over item text, optionally blended with a user's taste."""

from __future__ import annotations

from fastapi import APIRouter, Response

from playnext.serve.deps import EngineDep
from playnext.serve.routes.common import ERRORS, StrictJSONRoute, ranked, to_query
from playnext.serve.schemas import RecommendResponse, SearchRequest

router = APIRouter(tags=["search"], route_class=StrictJSONRoute)


@router.post("/search", response_model=RecommendResponse, responses=ERRORS)
def search(body: SearchRequest, engine: EngineDep) -> Response:
    """Items whose text (title, kind, genres, year) matches `query` ("a funny space adventure").

    With a user_id / history / session_id the text match is blended with taste:
    `score = (1 − blend) · cosine(query, item) + blend · taste percentile` (default blend 0.3).
    """
    return ranked(engine.search_ranked(body.query, to_query(body), body.blend), engine)
