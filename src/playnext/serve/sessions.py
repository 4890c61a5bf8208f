"""In-memory live sessions: bounded in count (least recently used evicted) and in length."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field


@dataclass
class Event:
    item: int  # catalog index (known items first, then cold-start items)
    event: str | None
    timestamp: float


@dataclass
class Session:
    id: str
    events: deque[Event]
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    def items(self) -> list[int]:
        return [e.item for e in self.events]


class SessionStore:
    """Thread-safe LRU map of session id → last `max_events` events."""

    def __init__(self, max_sessions: int = 10_000, max_events: int = 200) -> None:
        self.max_sessions = max_sessions
        self.max_events = max_events
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def append(self, session_id: str, items: list[int], events: list[str | None]) -> Session:
        now = time.time()
        with self._lock:
            s = self._sessions.get(session_id)
            if s is None:
                s = Session(session_id, deque(maxlen=self.max_events))
                self._sessions[session_id] = s
                while len(self._sessions) > self.max_sessions:
                    self._sessions.popitem(last=False)
                    self.evicted += 1
            self._sessions.move_to_end(session_id)
            s.events.extend(Event(i, e, now) for i, e in zip(items, events, strict=True))
            s.updated = now
            return _copy(s)

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            s = self._sessions.get(session_id)
            if s is None:
                return None
            self._sessions.move_to_end(session_id)
            return _copy(s)

    def delete(self, session_id: str) -> bool:
        with self._lock:
            return self._sessions.pop(session_id, None) is not None


def _copy(s: Session) -> Session:
    """A snapshot, so readers never iterate a deque another request is appending to."""
    return Session(s.id, deque(s.events, maxlen=s.events.maxlen), s.created, s.updated)
