"""Items: title search, one item, similar items, and cold-start items added at run time."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from playnext.serve.catalog import ItemRecord
from playnext.serve.deps import EngineDep, require_token
from playnext.serve.routes.common import ERRORS, StrictJSONRoute, ranked
from playnext.serve.schemas import AddedItem, ItemOut, ItemPage, NewItem, RecommendResponse

router = APIRouter(prefix="/items", tags=["items"], route_class=StrictJSONRoute)


@router.get("", response_model=ItemPage)
def list_items(
    engine: EngineDep,
    query: Annotated[str, Query(max_length=200, description="Case-insensitive title match.")] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> ItemPage:
    """Titles matching `query`: exact, then prefix, then substring, then all words in any order;
    ties by popularity. An empty query lists the catalog by popularity."""
    total, items = engine.find_titles(query, limit, offset)
    return ItemPage.model_validate({"total": total, "offset": offset, "limit": limit, "items": items})


@router.get("/{item_id}", response_model=ItemOut, responses=ERRORS)
def get_item(item_id: str, engine: EngineDep) -> ItemOut:
    i = engine.item_index(item_id)
    return ItemOut.model_validate(engine.item(i, popularity=engine.popularity_of(i)))


@router.get("/{item_id}/similar", response_model=RecommendResponse, responses=ERRORS)
def similar(
    item_id: str,
    engine: EngineDep,
    k: Annotated[int, Query(ge=1, le=1_000_000)] = 10,
    by: Annotated[Literal["model", "text"], Query(description="Model co-occurrence or text.")] = "model",
) -> Response:
    """Items like this one: what the model recommends after it alone (`model`; cold-start items
    always use `text`), or the nearest item texts (`text`)."""
    items = engine.similar(item_id, k, by)
    return ranked(items, engine)


@router.post(
    "",
    response_model=AddedItem,
    status_code=201,
    dependencies=[Depends(require_token)],
    responses={
        401: {"description": "No bearer token."},
        403: {"description": "Wrong token."},
        409: {"description": "The id exists already."},
    },
)
def add_item(body: NewItem, engine: EngineDep) -> AddedItem:
    """Add a cold-start item known only by its text. Needs `Authorization: Bearer <token>`.

    It is recommended at once: its score is the similarity-weighted mean model score of its
    `cold_neighbors` nearest known items by text embedding.
    """
    rec = ItemRecord(str(body.item_id), body.title, body.kind, list(body.genres), body.year)
    return AddedItem.model_validate(engine.add_item(rec))
