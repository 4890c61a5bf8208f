"""Live sessions: append events; the next /recommend with the session_id reflects them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from playnext.serve.deps import EngineDep, require_token
from playnext.serve.engine import Engine
from playnext.serve.errors import NotFound
from playnext.serve.routes.common import ERRORS, StrictJSONRoute
from playnext.serve.schemas import SESSION_ID, EventsRequest, SessionEvent, SessionOut
from playnext.state import NewEvent, SessionState

router = APIRouter(prefix="/sessions", tags=["sessions"], route_class=StrictJSONRoute)
SessionId = Annotated[str, Path(pattern=SESSION_ID, description="Any id the client picks.")]
STORE_DOWN: dict[int | str, dict[str, Any]] = {
    503: {"description": "The state store is unavailable (the reason in `detail`)."}
}


def _out(engine: Engine, s: SessionState) -> SessionOut:
    c = engine.catalog
    found = [c.lookup.get(e.item_id) for e in s.events]
    return SessionOut(
        session_id=s.id,
        user_id=s.user_id,
        length=len(s.events),
        events=[
            SessionEvent(
                item_id=e.item_id,
                title=c.titles[i] if i is not None else None,
                event=e.event,
                value=e.value,
                timestamp=e.ts,
            )
            for e, i in zip(s.events, found, strict=True)
        ],
    )


@router.post("/{session_id}/events", response_model=SessionOut, responses={**ERRORS, **STORE_DOWN})
def add_events(session_id: SessionId, body: EventsRequest, engine: EngineDep) -> SessionOut:
    """Log events and append them to the session (created if new). A 200 means they are committed
    to the state store; the session shows its last `max_session_events`; sessions are evicted
    least recently written first."""
    events = [NewEvent(str(e.item_id), e.event, e.value, e.timestamp) for e in body.events]
    user = str(body.user_id) if body.user_id is not None else None
    return _out(engine, engine.add_events(session_id, events, user))


@router.get("/{session_id}", response_model=SessionOut, responses={**ERRORS, **STORE_DOWN})
def get_session(session_id: SessionId, engine: EngineDep) -> SessionOut:
    s = engine.store.session(session_id)
    if s is None:
        raise NotFound("session id", [session_id])
    return _out(engine, s)


@router.delete(
    "/{session_id}",
    status_code=204,
    dependencies=[Depends(require_token)],
    responses={
        **ERRORS,
        **STORE_DOWN,
        401: {"description": "No bearer token."},
        403: {"description": "Wrong token."},
    },
)
def delete_session(session_id: SessionId, engine: EngineDep) -> Response:
    """Forget the session and its events (they leave the retraining log too). Erasing data needs
    `Authorization: Bearer <token>`; a client that is done with a session simply stops using it
    (sessions are evicted least recently written first)."""
    if not engine.store.delete_session(session_id):
        raise NotFound("session id", [session_id])
    return Response(status_code=204)
