"""Durable serving state shared by every server worker and the feedback loop (see store.py)."""

from playnext.state.store import (
    CatalogPrint,
    ColdItemRow,
    EventRow,
    Limits,
    NewEvent,
    SessionState,
    StateConflict,
    StateError,
    StateStore,
)

__all__ = [
    "CatalogPrint",
    "ColdItemRow",
    "EventRow",
    "Limits",
    "NewEvent",
    "SessionState",
    "StateConflict",
    "StateError",
    "StateStore",
]
