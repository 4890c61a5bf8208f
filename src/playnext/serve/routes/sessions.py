"""Live sessions: append events; the next /recommend with the session_id reflects them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from playnext.serve.catalog import UnknownIds
from playnext.serve.deps import EngineDep
from playnext.serve.engine import Engine
from playnext.serve.routes._common import ERRORS
from playnext.serve.schemas import SESSION_ID, EventsRequest, SessionEvent, SessionOut
from playnext.serve.sessions import Session

router = APIRouter(prefix="/sessions", tags=["sessions"])
SessionId = Annotated[str, Path(pattern=SESSION_ID, description="Any id the client picks.")]


def _out(engine: Engine, s: Session) -> SessionOut:
    c = engine.catalog
    return SessionOut(
        session_id=s.id,
        length=len(s.events),
        events=[SessionEvent(item_id=c.ids[e.item], title=c.titles[e.item], event=e.event) for e in s.events],
    )


@router.post("/{session_id}/events", response_model=SessionOut, responses=ERRORS)
def add_events(session_id: SessionId, body: EventsRequest, engine: EngineDep) -> SessionOut:
    """Append events (creating the session); keeps the last `max_session_events`, LRU-evicts sessions."""
    s = engine.add_events(session_id, [e.item_id for e in body.events], [e.event for e in body.events])
    return _out(engine, s)


@router.get("/{session_id}", response_model=SessionOut, responses=ERRORS)
def get_session(session_id: SessionId, engine: EngineDep) -> SessionOut:
    s = engine.sessions.get(session_id)
    if s is None:
        raise UnknownIds("session id", [session_id], 404)
    return _out(engine, s)


@router.delete("/{session_id}", status_code=204, responses=ERRORS)
def delete_session(session_id: SessionId, engine: EngineDep) -> Response:
    if not engine.sessions.delete(session_id):
        raise UnknownIds("session id", [session_id], 404)
    return Response(status_code=204)
