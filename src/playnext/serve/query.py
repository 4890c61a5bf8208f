"""A query, resolved: who it is for (user, history, session) and what may come back.

`Queries.resolve` turns a `Query` into a `Context` every other part reads: the history as catalog
indices (what filters and re-ranking see) and as the model's own items (what it scores), the
allowed mask, and for a model trained with actions each event's type and value. A session's
skips are negatives: a skipped item does not come back in that session's answers, and a model
without a skip type never reads it as a pick.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from playnext.artifact import Artifact
from playnext.data.events import SKIP, check_event, reads_event
from playnext.data.interactions import Histories
from playnext.data.request_time import now
from playnext.rerank import RerankSpec
from playnext.serve.catalog import Catalog
from playnext.serve.cold import ColdItems
from playnext.serve.errors import NotFound, QueryError, UnknownIds
from playnext.serve.settings import Settings
from playnext.state import NewEvent, SessionState, StateStore


@dataclass
class Query:
    """Who to recommend for, and what may be recommended."""

    user_id: str | None = None
    history: list[str] | None = None
    session_id: str | None = None
    remove: list[str] | None = None  # items left out of all of the above, for this query only
    k: int = 10
    exclude_seen: bool = True
    explain: bool = True
    kinds: list[str] | None = None
    genres: list[str] | None = None
    year_min: int | None = None
    year_max: int | None = None
    exclude_items: list[str] | None = None
    only_items: list[str] | None = None
    rerank: RerankSpec | None = None
    at: int | None = None  # unix seconds the query is asked at (None: now, when resolved)

    @property
    def has_who(self) -> bool:
        return self.user_id is not None or self.history is not None or self.session_id is not None


@dataclass
class Ranked:
    """An answer: the items, and what re-ranking did (None when it was not asked for)."""

    items: list[dict[str, Any]]
    rerank: dict[str, Any] | None = None


@dataclass
class Context:
    """A resolved query: model user index (-1: anonymous), histories, allowed mask over `n` items."""

    user: int
    history: np.ndarray  # catalog indices, in time order
    model_history: np.ndarray  # the model's item ids (cold items mapped to known neighbours)
    allowed: np.ndarray  # (n,) bool
    n: int
    # a typed model's events of model_history: codes into `event_types` (-1: untyped), values
    events: np.ndarray | None = None
    values: np.ndarray | None = None
    event_types: tuple[str, ...] = ()
    at: int | None = None  # unix seconds the query is asked at
    # a request-time model's seconds of each model_history event, when every part has them
    times: np.ndarray | None = None

    def model_histories(self, masks: Sequence[np.ndarray]) -> Histories:
        """One model history per mask (`model_history[mask]`), asked at `at`, with a typed
        model's events and a request-time model's event times."""
        hist = Histories.from_lists([self.model_history[m] for m in masks])
        if self.at is not None:
            hist = hist.with_at(np.full(len(masks), self.at, dtype=np.int64))
        if self.times is not None:
            parts = [self.times[m] for m in masks]
            hist = hist.with_times(np.concatenate(parts) if parts else self.times[:0])
        if self.events is None or self.values is None:
            return hist
        codes = np.concatenate([self.events[m] for m in masks]) if masks else np.zeros(0, np.int32)
        values = np.concatenate([self.values[m] for m in masks]) if masks else np.zeros(0, np.float32)
        return hist.with_events(codes, values, self.event_types)


def _untyped(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full(n, -1, np.int32), np.full(n, np.nan, np.float32)


class Queries:
    """Resolves queries against one artifact, its catalog and the shared sessions."""

    def __init__(
        self, artifact: Artifact, settings: Settings, store: StateStore, catalog: Catalog, cold: ColdItems
    ) -> None:
        self.artifact = artifact
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.cold = cold
        # a model trained with actions reads session events; any other only logs them
        self.event_types = artifact.model.event_types
        # a model trained with the request's time reads each event's gap to it
        self.request_time = artifact.model.uses_request_time

    @property
    def n_items(self) -> int:
        return self.catalog.n_known + len(self.cold)

    # ---- ids ------------------------------------------------------------------------------------
    def indices(self, ids: Sequence[object], what: str) -> np.ndarray:
        """Catalog indices; an unknown id first makes us look for cold items another worker added."""
        try:
            return self.catalog.indices(ids, what)
        except UnknownIds:
            if not self.cold.sync(force=True):
                raise
            return self.catalog.indices(ids, what)

    def item_index(self, item_id: object) -> int:
        """The catalog index of the item a call is about (`NotFound` when there is none)."""
        try:
            return int(self.indices([item_id], "item id")[0])
        except UnknownIds as e:
            raise NotFound("item id", e.ids) from None

    def check_user(self, user_id: str) -> None:
        if user_id not in self.artifact.users:
            raise UnknownIds("user id", [user_id])

    def check_k(self, k: int) -> None:
        if k > self.settings.max_k:
            raise QueryError(f"k={k} is above the limit of {self.settings.max_k}")

    # ---- resolving --------------------------------------------------------------------------
    def resolve(self, q: Query) -> Context:
        """The query's user, history (user's, given, session's: in that order, less `remove`),
        allowed items (less the session's skips) and the time it is asked at (`at`, else now).
        A request-time model also gets the events' times when every part has them (the user's
        stored ones, the session's); else it reads its own (`HSTU.score`)."""
        s = self.settings
        at = q.at if q.at is not None else now()
        self.check_k(q.k)
        if q.history is not None and len(q.history) > s.max_history:
            raise QueryError(f"history has {len(q.history)} items; the limit is {s.max_history}")
        if not q.has_who:
            raise QueryError("give a user_id, a history or a session_id")
        self.cold.sync()
        n = self.n_items
        removed = self.indices(q.remove, "item id(s) in remove_from_history") if q.remove else None
        skipped = np.zeros(0, dtype=np.int64)
        parts: list[np.ndarray] = []
        events: list[tuple[np.ndarray, np.ndarray]] = []  # per part: codes, values
        times: list[np.ndarray | None] = []  # per part: seconds, if known (request-time models)
        user = -1
        if q.user_id is not None:
            self.check_user(str(q.user_id))
            user = int(self.artifact.users.to_internal([q.user_id], kind="user")[0])
            parts.append(self.artifact.histories[user].astype(np.int64))
            events.append(self._stored_events(user))
            times.append(self._stored_times(user, len(parts[-1])))
        if q.history is not None:
            parts.append(self.indices(q.history, "item id(s) in history"))
            events.append(_untyped(len(parts[-1])))
            times.append(None)  # an anonymous history says nothing of when
        if q.session_id is not None:
            sess = self.store.session(q.session_id)
            if sess is None:
                raise UnknownIds("session id", [q.session_id])
            items, codes, values, skipped, stamps = self._session_events(sess)
            parts.append(items)
            events.append((codes, values))
            times.append(stamps)
        history = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        codes = np.concatenate([e[0] for e in events]) if events else np.zeros(0, np.int32)
        values = np.concatenate([e[1] for e in events]) if events else np.zeros(0, np.float32)
        known = [t for t in times if t is not None]
        timed = self.request_time and len(known) == len(times)
        seconds: np.ndarray | None = np.concatenate(known) if timed else None
        if removed is not None:  # a what-if: the model reads the history as if it lacked them
            kept = ~np.isin(history, removed)
            history, codes, values = history[kept], codes[kept], values[kept]
            seconds = seconds[kept] if seconds is not None else None
            skipped = skipped[~np.isin(skipped, removed)]
        allowed = self.allowed(q)
        if q.exclude_seen and len(history):
            allowed[history[history < n]] = False
        allowed[skipped[skipped < n]] = False
        model_history, keep = self.cold.to_model(history)
        seconds = seconds[keep] if seconds is not None else None
        if not self.event_types:
            return Context(user, history, model_history, allowed, n, at=at, times=seconds)
        typed = (codes[keep], values[keep], self.event_types)
        return Context(user, history, model_history, allowed, n, *typed, at=at, times=seconds)

    def anonymous(self, q: Query) -> Context:
        """A query with no one behind it (text search alone): only its filters."""
        self.check_k(q.k)
        empty = np.zeros(0, np.int64)
        return Context(-1, empty, empty, self.allowed(q), self.n_items)

    def allowed(self, q: Query) -> np.ndarray:
        """The query's filters as one mask, so recommend and search apply them alike."""
        exclude = self.indices(q.exclude_items, "item id(s) in exclude_items") if q.exclude_items else None
        only = self.indices(q.only_items, "item id(s) in only_items") if q.only_items is not None else None
        return self.catalog.mask(
            self.n_items,
            kinds=q.kinds,
            genres=q.genres,
            year_min=q.year_min,
            year_max=q.year_max,
            exclude=exclude,
            only=only,
        )

    # ---- typed events -------------------------------------------------------------------------
    def _stored_events(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """A known user's training events against this model's types (untyped if not stored)."""
        h = self.artifact.histories
        lo, hi = int(h.indptr[user]), int(h.indptr[user + 1])
        if h.events is None or h.values is None or not self.event_types:
            return _untyped(hi - lo)
        own = {t: i for i, t in enumerate(self.event_types)}
        remap = np.array([own.get(n, -1) for n in h.event_names] + [-1], dtype=np.int32)
        return remap[h.events[lo:hi]], h.values[lo:hi]

    def _stored_times(self, user: int, n: int) -> np.ndarray | None:
        """A known user's stored event seconds, for a request-time model that kept them."""
        if not self.request_time:
            return None
        found = self.artifact.model.stored_times(user)
        return found if found is not None and len(found) == n else None

    def _session_events(
        self, sess: SessionState
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A session's items (catalog indices) with their events against this model's types and
        their unix seconds, and the items whose latest event is a skip. A model without a skip
        type would read a skipped item as a pick, so its skips stay out of the history: an
        implicit negative, nothing more.
        Items this catalog lacks (logged under another model) are left out rather than failing."""
        lookup = self.catalog.lookup
        if any(e.item_id not in lookup for e in sess.events):
            self.cold.sync(force=True)
        own = {t: i for i, t in enumerate(self.event_types)}
        found = [(lookup[e.item_id], e) for e in sess.events if e.item_id in lookup]
        latest = {i: e.event for i, e in found}  # a later like takes a skip back, and vice versa
        skipped = np.asarray(sorted(i for i, ev in latest.items() if ev == SKIP), dtype=np.int64)
        found = [(i, e) for i, e in found if reads_event(e.event, self.event_types)]
        items = np.asarray([i for i, _ in found], dtype=np.int64)
        codes = np.asarray([own.get(e.event or "", -1) for _, e in found], dtype=np.int32)
        values = np.asarray([np.nan if e.value is None else e.value for _, e in found], dtype=np.float32)
        seconds = np.asarray([math.floor(e.ts) for _, e in found], dtype=np.int64)
        return items, codes, values, skipped, seconds

    def check_events(self, events: Sequence[NewEvent]) -> None:
        """Ids this catalog knows and, for a model trained with actions, only its own event types
        in their value ranges (an `UnknownEventTypeError` names the known ones). A skip is taken
        by every model: one without the type reads it as an implicit negative."""
        self.indices([e.item_id for e in events], "item id(s) in events")
        if not self.event_types:
            return
        for e in events:
            check_event(e.event, e.value, (*self.event_types, SKIP) if e.event == SKIP else self.event_types)
