"""Shared route helpers: request bodies → engine queries, error responses for the OpenAPI docs."""

from __future__ import annotations

from typing import Any

from fastapi import Response
from pydantic import BaseModel

from playnext.serve.engine import Engine, Query, Ranked
from playnext.serve.schemas import ErrorBody, RecommendResponse, Who

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "An id in the URL path does not exist."},
    422: {"description": "Invalid input, or unknown ids in the body (named in `detail`)."},
}


def to_query(body: Who) -> Query:
    kinds = [body.kind] if isinstance(body.kind, str) else body.kind
    return Query(
        user_id=str(body.user_id) if body.user_id is not None else None,
        history=[str(h) for h in body.history] if body.history is not None else None,
        session_id=body.session_id,
        k=body.k,
        exclude_seen=body.exclude_seen,
        explain=body.explain,
        kinds=kinds,
        genres=body.genres,
        year_min=body.year_min,
        year_max=body.year_max,
        exclude_items=[str(i) for i in body.exclude_items] if body.exclude_items is not None else None,
        only_items=[str(i) for i in body.only_items] if body.only_items is not None else None,
        rerank=body.rerank,
    )


def json_response(body: BaseModel) -> Response:
    """A response model validated once, serialised by pydantic-core: returning the model itself
    would make FastAPI validate it again in a thread-pool hop (~0.1 ms of a 2 ms request)."""
    return Response(body.model_dump_json(), media_type="application/json")


def ranked(answer: Ranked | list[dict[str, Any]], engine: Engine) -> Response:
    """The shared body of /recommend, /search and /similar."""
    items, rerank = (answer.items, answer.rerank) if isinstance(answer, Ranked) else (answer, None)
    body = {"items": items, "model": engine.model.name, "rerank": rerank}
    return json_response(RecommendResponse.model_validate(body))
