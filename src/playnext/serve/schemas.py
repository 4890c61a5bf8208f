"""Request and response bodies. Ids are the dataset's own, as strings or numbers; answers carry strings."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from playnext.data.request_time import parse_at
from playnext.errors import ConfigError
from playnext.rerank import RerankSpec

Id = Annotated[str | int, Field(description="An id as in the dataset (string or number).")]
SESSION_ID = r"^[A-Za-z0-9_.:-]{1,64}$"


class _Strict(BaseModel):
    """A request body: a misspelt field is a 422, not silently ignored, and types are strict —
    `"k": true` or `"k": "3"` is a 422, not 1 or 3, and `"item_id": false` is no item "0"."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Filters(_Strict):
    """What may be recommended. Unknown kinds, genres or item ids are a 422 naming them."""

    kind: str | list[str] | None = Field(None, description="Only these kinds (movie, music, game, …).")
    genres: list[str] | None = Field(None, description="Only items with at least one of these genres.")
    year_min: int | None = Field(None, ge=-10_000, le=10_000)
    year_max: int | None = Field(None, ge=-10_000, le=10_000)
    exclude_items: list[Id] | None = Field(None, description="Never recommend these.")
    only_items: list[Id] | None = Field(None, description="Recommend only among these.")


class Who(Filters):
    user_id: Id | None = Field(None, description="A user of the training data: their stored history.")
    history: list[Id] | None = Field(None, description="Item ids, oldest first (anonymous visitor).")
    session_id: str | None = Field(None, pattern=SESSION_ID, description="A live session's events.")
    remove_from_history: list[Id] | None = Field(
        None,
        max_length=1000,
        description="Items left out of everything above (the stored history, `history`, the "
        "session's events and skips) for this request only: they may be recommended again.",
    )
    k: int = Field(10, ge=1, le=1_000_000, description="How many items; at most the server's max_k.")
    exclude_seen: bool = Field(True, description="Leave out items already in the history.")
    explain: bool = Field(
        True,
        description="Say why each item is recommended. For sequence models this costs one extra "
        "forward pass per recent history item; clients that do not show reasons can skip it.",
    )
    rerank: RerankSpec | None = Field(
        None,
        description="Re-rank the model's top `pool` items: novelty weight, calibration to the "
        "history's genre or kind mix, MMR diversity, quotas (applied in that order; docs/rerank.md). "
        'E.g. {"calibrate": {"lambda": 0.5}, "quota": {"min_per_kind": {"game": 2}}}.',
    )

    at: int | float | str | None = Field(
        None,
        description="When the request is asked: unix seconds or an ISO-8601 time (UTC without a "
        "zone); default now. Only a model trained with the request's time reads it (`/health`'s "
        "`request_time`): each history event's gap to it.",
        examples=[1714564800, "2024-05-01T12:00:00Z"],
    )

    @field_validator("rerank", mode="before")
    @classmethod
    def _strict_rerank(cls, v: Any) -> Any:
        """The re-ranking options as strictly typed as the rest (`"lambda": true` is a 422)."""
        return RerankSpec.model_validate(v, strict=True) if isinstance(v, dict) else v

    @field_validator("at")
    @classmethod
    def _read_at(cls, v: int | float | str | None) -> int | None:
        """Read once, by the rule every entry point shares (`playnext.data.request_time`)."""
        if v is None:
            return None
        try:
            return parse_at(v)
        except ConfigError as e:
            raise ValueError(str(e)) from None

    @property
    def at_seconds(self) -> int | None:
        """`at` as unix seconds (None: not given; the server asks at now)."""
        return None if self.at is None else parse_at(self.at)


class RecommendRequest(Who):
    """Give at least one of user_id, history, session_id; their items are combined in that order."""


class SearchRequest(Who):
    """A natural-language query, optionally personalised by user_id / history / session_id."""

    query: str = Field(min_length=1, max_length=500, examples=["a funny space adventure"])
    exclude_seen: bool = True
    blend: float | None = Field(
        None, ge=0.0, le=1.0, description="Weight of taste vs text (default: the server's search_blend)."
    )


class Because(BaseModel):
    item_id: str
    title: str
    weight: float = Field(description="Contribution, similarity or neighbour weight (see method).")


class Explanation(BaseModel):
    method: str = Field(
        description="item-item | leave-one-out | text-similarity | cold-start | text | text+taste | "
        "co-occurrence | model | popularity"
    )
    text: str
    because: list[Because]


class Item(BaseModel):
    item_id: str
    title: str
    kind: str | None = None
    genres: list[str] = []
    year: int | None = None
    cold_start: bool = Field(False, description="Added at run time; scored through its text.")


class ScoredItem(Item):
    rank: int
    score: float
    explanation: Explanation | None = Field(description="Null when the request set explain=false.")
    text_score: float | None = None
    taste_score: float | None = None


class RelaxedQuota(BaseModel):
    constraint: str = Field(description="min_per_kind | max_per_genre")
    key: str = Field(description="The kind or genre.")
    wanted: int = Field(description="The minimum asked for, or the maximum allowed.")
    got: int


class RerankSummary(BaseModel):
    applied: list[str] = Field(description="The re-rankers that ran, in order.")
    params: dict[str, Any] = Field(description="The full re-ranking request, defaults included.")
    pool: int = Field(description="How many of the model's best candidates were re-ranked.")
    similarity: str | None = Field(None, description="What MMR compared: embedding | genres.")
    relaxed: list[RelaxedQuota] = Field(
        description="Quotas the list could not meet; it meets as many of the others as it can."
    )


class RecommendResponse(BaseModel):
    items: list[ScoredItem]
    model: str
    rerank: RerankSummary | None = Field(None, description="What re-ranking did, when it was asked for.")


class ItemOut(Item):
    popularity: int = 0


class ItemPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[ItemOut]


class NewItem(_Strict):
    """A cold-start item: text metadata only."""

    item_id: Id
    title: str = Field(min_length=1, max_length=300)
    kind: str | None = Field(None, max_length=40)
    genres: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field([], max_length=20)
    year: int | None = Field(None, ge=0, le=3000)


class AddedItem(Item):
    neighbors: list[Because] = Field(description="Known items it borrows its scores from.")


class EventIn(_Strict):
    item_id: Id
    event: str | None = Field(None, max_length=32, description="play, like, skip, rating, … (logged).")
    value: float | None = Field(
        None, allow_inf_nan=False, description="Watch fraction, rating, play hours, … (logged)."
    )
    timestamp: float | None = Field(
        None, ge=0, le=1e11, description="Unix seconds when it happened (default: when received)."
    )


class EventsRequest(_Strict):
    user_id: Id | None = Field(None, description="A known user this session belongs to (for retraining).")
    events: list[EventIn] = Field(min_length=1, max_length=1000)


class UserOut(BaseModel):
    user_id: str
    n_events: int = Field(description="The length of the user's stored history.")


class UserPage(BaseModel):
    total: int
    offset: int
    limit: int
    users: list[UserOut]


class HistoryItem(Item):
    event: str | None = Field(None, description="The event type (a typed log only).")
    value: float | None = Field(None, description="The event's value (a typed log only).")


class UserHistory(BaseModel):
    user_id: str
    length: int = Field(description="Events in the stored history; `events` holds the last `limit`.")
    events: list[HistoryItem] = Field(description="Oldest first, as the model reads them.")


class SessionEvent(BaseModel):
    item_id: str
    title: str | None = Field(description="Null for an item the serving model's catalog lacks.")
    event: str | None
    value: float | None = None
    timestamp: float


class SessionOut(BaseModel):
    session_id: str
    user_id: str | None = None
    length: int
    events: list[SessionEvent]


class ModelStatus(BaseModel):
    path: str | None = Field(
        description="The model folder being served (None: given in code); its name only without the token."
    )
    loaded_at: float
    swaps: int = Field(description="Models swapped in since this worker started.")
    last_error: str | None = Field(description="Why the last model offered was refused, if it was.")


class EventTypeOut(BaseModel):
    name: str
    low: float | None = Field(description="The smallest value it takes (null: unbounded).")
    high: float | None = Field(description="The largest value it takes (null: unbounded).")
    positive: bool = Field(description="Whether it can say the user wants the item (a training target).")
    positive_from: float | None = Field(description="Positive from this value on (null: any value).")
    meaning: str


class Health(BaseModel):
    status: str = Field(description="ok, or why the state store is unusable (the answer is then a 503).")
    model: str
    serving: ModelStatus
    store: str = Field(description="sqlite or postgresql; with the token also where (never a password).")
    pid: int
    n_users: int
    n_items: int
    n_cold_items: int
    cold_live_weight: float = Field(
        description="Weight of log(1 + a cold item's events so far) in its score."
    )
    sessions: int
    text_encoder: str | None
    text_index: str | None
    request_time: bool = Field(
        False,
        description="Whether the model was trained with the request's time: its answers read each "
        "request's `at` (default now).",
    )
    event_types: list[EventTypeOut] = Field(
        description="The event types session events may name, with their value ranges (empty: the "
        "model reads no event types; any is logged)."
    )
    uptime_seconds: float


class ErrorBody(BaseModel):
    detail: str
    unknown: list[str] | None = None


class SwapRequest(_Strict):
    model_dir: str = Field(min_length=1, max_length=4096, description="A model folder on the server.")


class SwapOut(BaseModel):
    model: str
    serving: ModelStatus
