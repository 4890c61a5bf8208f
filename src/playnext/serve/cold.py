"""Cold-start items: items added at run time, known only by their text.

The state store holds them, so every worker (and the next engine after a model swap) sees the
same ones; each worker applies them to its own catalog and text index. A cold item borrows its
score from its nearest known items by text (`ranking.cold_neighbours`), unless the model has a
content tower and scores it itself; it may also gain its live event count (`LiveCounts`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from playnext.artifact import Artifact
from playnext.models.base import Recommender
from playnext.ranking import cold_neighbours, item_texts
from playnext.serve.catalog import Catalog, ItemRecord, meta_frame
from playnext.serve.errors import Conflict, TextOff
from playnext.serve.index import VectorIndex
from playnext.serve.settings import Settings
from playnext.state import StateStore
from playnext.text import TextEncoder


@dataclass(frozen=True)
class Neighbours:
    """Every applied cold item's nearest known items (by text) and their borrowing weights.

    Replaced whole, never changed in place: a reader takes one snapshot and sees a consistent set.
    """

    nn: np.ndarray  # (C, kn) known items, nearest first
    w: np.ndarray  # (C, kn) softmax weights, rows sum to 1
    vectors: torch.Tensor | None = None  # (C, D) a content tower's own vectors: no borrowing

    def __len__(self) -> int:
        return len(self.nn)


class ColdItems:
    """This worker's view of the cold-start items: applies what the store holds, maps them for
    the model. Applying takes a lock; reads are lock-free (one `Neighbours` snapshot)."""

    def __init__(
        self,
        model: Recommender,
        catalog: Catalog,
        store: StateStore,
        settings: Settings,
        encoder: TextEncoder | None,
        index: VectorIndex | None,
    ) -> None:
        self.model = model
        self.catalog = catalog
        self.store = store
        self.settings = settings
        self.encoder = encoder
        self.index = index
        self.n_known = catalog.n_known
        kn = min(settings.cold_neighbors, self.n_known)
        self.neighbours = Neighbours(np.zeros((0, kn), np.int64), np.zeros((0, kn), np.float32))
        self._seq = 0  # the newest store cold item applied here
        self._checked = 0.0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Cold items fully applied here (an add in flight is not yet servable)."""
        return len(self.neighbours)

    def to_model(self, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A catalog history as the model's item ids, and which entries were kept: a cold item
        reads as its nearest known item; one not yet applied here is dropped."""
        nb = self.neighbours
        ci = history - self.n_known
        cold = ci >= 0
        keep = ~cold | (ci < len(nb))
        out = history.copy()
        mapped = cold & keep
        out[mapped] = nb.nn[ci[mapped], 0]
        return out[keep], keep

    # ---- adding and applying ----------------------------------------------------------------
    def add(self, rec: ItemRecord) -> int:
        """Commit an item known only by its text to the store (so every worker and the next
        retrain see it), apply it here, and return its catalog index; the other workers pick it
        up on their next poll or on first mention."""
        if self.index is None or self.encoder is None:
            raise TextOff()
        if rec.item_id in self.catalog.lookup:
            raise Conflict(f"item id {rec.item_id} already exists")
        row = self.store.add_cold_item(rec.item_id, rec.title, rec.kind or "", rec.genres, rec.year)
        self.sync(force=True)
        return self.catalog.lookup[row.item_id]

    def sync(self, force: bool = False) -> bool:
        """Apply cold items committed by any worker since the last look; True when some were new.

        Without `force` the store is asked at most every `cold_poll_seconds`."""
        if self.encoder is None or self.index is None:
            return False
        now = time.monotonic()
        if not force and now - self._checked < self.settings.cold_poll_seconds:
            return False
        self._checked = now
        with self._lock:
            rows = self.store.cold_items(after_seq=self._seq)
            if rows:
                self._seq = rows[-1].seq
            # a retrained model may know some already
            fresh = [
                ItemRecord(r.item_id, r.title, r.kind or None, list(r.genres), r.year)
                for r in rows
                if r.item_id not in self.catalog.lookup
            ]
            if fresh:
                self._apply(fresh, self.encoder, self.index)
        return bool(fresh)

    def _apply(self, recs: list[ItemRecord], encoder: TextEncoder, index: VectorIndex) -> None:
        """Catalog rows and index vectors first, the neighbours last: an item is servable (counted
        in `len`) only once everything about it is in place."""
        meta = meta_frame(recs)
        vecs = encoder.encode(item_texts(meta))  # (R, D): one batch, however many were added
        s = self.settings
        nn, w = cold_neighbours(vecs, index.vectors[: self.n_known], s.cold_neighbors, s.cold_temperature)
        for rec in recs:
            self.catalog.append(rec)
        index.add(vecs)
        old = self.neighbours
        vectors = old.vectors
        if self.model.has_content:
            v = self.model.content_vectors(meta)  # (R, D)
            vectors = v if vectors is None else torch.cat([vectors, v])
        self.neighbours = Neighbours(np.concatenate([old.nn, nn]), np.concatenate([old.w, w]), vectors)


class LiveCounts:
    """Cold items' events so far, counted from the store's log (every worker's), re-read at most
    every `cold_poll_seconds` and then only past the last watermark."""

    def __init__(self, store: StateStore, catalog: Catalog, poll_seconds: float) -> None:
        self.store = store
        self.catalog = catalog
        self.poll_seconds = poll_seconds
        # (their ids, counts, watermark), replaced whole so a concurrent reader sees one state
        self._live: tuple[tuple[str, ...], np.ndarray, int] = ((), np.zeros(0, dtype=np.int64), 0)
        self._checked = 0.0

    def __call__(self, n_cold: int) -> np.ndarray:
        """(n_cold,) events of the first `n_cold` cold items; when the cold set grew they are
        counted again from the start of the log (new items have no watermark)."""
        ids, counts, seq = self._live
        now = time.monotonic()
        if len(ids) < n_cold or now - self._checked >= self.poll_seconds:
            self._checked = now
            lo = self.catalog.n_known
            want = tuple(self.catalog.ids[lo : lo + n_cold])
            grew = want[: len(ids)] != ids or len(want) > len(ids)
            got, seq = self.store.item_counts(want, after_seq=0 if grew else seq)
            base = np.zeros(len(want), dtype=np.int64) if grew else counts.copy()
            base += np.array([got.get(i, 0) for i in want], dtype=np.int64)
            self._live = (want, base, seq)
            counts = base
        return counts[:n_cold]


def live_weight(artifact: Artifact, settings: Settings) -> float:
    """The weight of a cold item's live event count: the setting, else what `playnext train
    --cold` chose on validation questions for this model's way of scoring cold items, else 0."""
    if settings.cold_live_weight is not None:
        return settings.cold_live_weight
    chosen = artifact.info.get("cold", {}).get("live_weights", {})
    way = "content" if artifact.model.has_content else "borrowing"
    return float(chosen.get(way, {}).get("chosen", 0.0))
