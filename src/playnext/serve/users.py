"""The model's known users: find them by id and read their stored histories.

A client (the web page) picks a user of the training data to see what the model knows of them —
their history as the artifact stores it — beside what it recommends for them. Ids are matched as
text, so a catalog of numeric ids is searched as typed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from playnext.artifact import Artifact
from playnext.serve.catalog import Catalog
from playnext.serve.errors import NotFound


class Users:
    """Read-only views of the artifact's users (they never change while a model serves)."""

    def __init__(self, artifact: Artifact, catalog: Catalog) -> None:
        self.users = artifact.users
        self.histories = artifact.histories
        self.catalog = catalog
        self._lower = self.users.external.str.to_lowercase()

    def find(self, query: str, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        """Users whose id contains `query` (case-insensitive): the exact id first, then ids that
        start with it, then the rest, each in training order; an empty query lists them all."""
        q = query.strip().lower()
        n = len(self.users)
        if q:
            rank = np.full(n, 9, dtype=np.int64)
            rank[self._lower.str.contains(q, literal=True).to_numpy()] = 2
            rank[self._lower.str.starts_with(q).to_numpy()] = 1
            rank[(self._lower == q).to_numpy()] = 0
            rows = np.flatnonzero(rank < 9)
            rows = rows[np.argsort(rank[rows], kind="stable")]
        else:
            rows = np.arange(n)
        page = rows[offset : offset + limit]
        ids = self.users.external.gather(pl.Series(page, dtype=pl.Int64)).to_list() if len(page) else []
        n_events = self.histories.lengths[page].tolist()
        return len(rows), [{"user_id": u, "n_events": m} for u, m in zip(ids, n_events, strict=True)]

    def history(self, user_id: str, limit: int) -> dict[str, Any]:
        """The user's last `limit` stored events, oldest first (as a session lists its events),
        each with its item's metadata and, for a typed log, the event type and value."""
        row = self.users.lookup.get(user_id)
        if row is None:
            raise NotFound("user id", [user_id])
        h = self.histories
        lo, hi = int(h.indptr[row]), int(h.indptr[row + 1])
        start = max(lo, hi - limit)
        names = (*h.event_names, None)  # code -1: untyped
        events = []
        for j in range(start, hi):
            event, value = None, None
            if h.events is not None and h.values is not None:
                event = names[int(h.events[j])]
                v = float(h.values[j])
                value = v if math.isfinite(v) else None
            events.append(self.catalog.item(int(h.items[j]), event=event, value=value))
        return {"user_id": user_id, "length": hi - lo, "events": events}
