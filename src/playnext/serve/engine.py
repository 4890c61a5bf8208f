"""What the API does, without HTTP: recommend, explain, search, similar items, cold-start items.

One `Engine` wraps a loaded `Artifact` and composes the parts, one job each: `Queries` (query →
context), `Scorer` (scores → lists, through `playnext.ranking`), `Explainer`, `Search`,
`ColdItems` and `Users` (the known users' stored histories). Sessions, events and cold-start
items live in the shared `StateStore`, so every worker (and the next engine after a model swap)
sees the same state. Parts raise domain errors (`serve/errors.py`); `app.py` turns them into HTTP
answers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from playnext.artifact import Artifact
from playnext.data.interactions import Columns
from playnext.errors import ConfigError
from playnext.rerank import ItemFeatures
from playnext.serve.catalog import Catalog, ItemRecord
from playnext.serve.cold import ColdItems, LiveCounts, live_weight
from playnext.serve.explain import Explainer
from playnext.serve.index import VectorIndex
from playnext.serve.query import Queries, Query, Ranked
from playnext.serve.rank import Scorer
from playnext.serve.search import Search
from playnext.serve.settings import Settings
from playnext.serve.users import Users
from playnext.state import CatalogPrint, NewEvent, SessionState, StateStore
from playnext.state.store import CATALOG_HEAD
from playnext.text import TextEncoder, encode_cached, make_encoder

log = logging.getLogger("playnext.serve")


class LazyEncoder:
    """The text encoder a server's engines share, loaded the first time a catalog has text to
    encode: MiniLM takes seconds to load, and a catalog of ids alone never needs it."""

    def __init__(self, kind: str, encoder: TextEncoder | None = None) -> None:
        self.kind = kind
        self._encoder = encoder
        self._lock = threading.Lock()

    def get(self) -> TextEncoder | None:
        with self._lock:
            if self._encoder is None and self.kind != "none":
                t0 = time.perf_counter()
                self._encoder = make_encoder(self.kind)
                if self._encoder is not None:
                    log.info(
                        "serve: text encoder %s loaded in %.1f s",
                        self._encoder.name,
                        time.perf_counter() - t0,
                    )
            return self._encoder


def has_text(meta: pl.DataFrame) -> np.ndarray:
    """(N,) whether each item says something of its own: a title other than its id (id-only
    data titles an item by its id), genres, a year, or a kind unless every item has that one
    (`--option kind=game`). Only these are worth encoding."""
    c = Columns
    n = meta.height

    def col(name: str) -> pl.Series:
        return meta.get_column(name) if name in meta.columns else pl.Series(name, [None] * n)

    ids, title = col(c.ITEM_ID).cast(pl.String), col(c.TITLE).cast(pl.String)
    titled = title.is_not_null() & (title.str.strip_chars() != "") & (title != ids).fill_null(True)
    kind = col(c.KIND).cast(pl.String)
    kinded = kind.is_not_null() & (kind != "") & (kind.drop_nulls().n_unique() > 1)
    genres = col(c.GENRES)
    genred = (genres.list.len() > 0).fill_null(False) if genres.dtype == pl.List else genres.is_not_null()
    return (titled | kinded | genred | col(c.YEAR).is_not_null()).fill_null(False).to_numpy()


class Engine:
    """Serves one artifact; thread-safe (reads are lock-free, catalog growth takes a lock).

    The parts hold no reference back to the engine: a swapped-out engine is freed by reference
    counting as soon as its last request lets go."""

    def __init__(
        self,
        artifact: Artifact,
        settings: Settings,
        store: StateStore,
        encoder: TextEncoder | LazyEncoder | None = None,
    ) -> None:
        """`encoder`: None makes `settings.text_encoder`'s; a `LazyEncoder` is loaded only
        if this catalog has text."""
        self.artifact = artifact
        self.settings = settings
        self.store = store
        # a store serves one catalog: another model's would read its sessions as the wrong items
        store.bind_catalog(catalog_print(artifact))
        self.model = artifact.model
        self.catalog = Catalog(artifact.meta)
        self.n_known = self.catalog.n_known
        popularity = np.bincount(artifact.histories.items.astype(np.int64), minlength=self.n_known)
        lazy = encoder if isinstance(encoder, LazyEncoder) else LazyEncoder(settings.text_encoder, encoder)
        texted = np.flatnonzero(has_text(artifact.meta))
        self.n_texted = len(texted)
        t0 = time.perf_counter()
        # an item with no text of its own gets a zero row (similar to nothing); with none at all
        # there is nothing to search or borrow by text, and no encoder is loaded
        self.encoder = lazy.get() if len(texted) else None
        self.encoder_seconds = time.perf_counter() - t0  # 0 once loaded: engines share it
        t0 = time.perf_counter()
        self.text_index: VectorIndex | None = None
        if self.encoder is not None:
            texts = self.catalog.texts(0, self.n_known)
            vecs = np.zeros((self.n_known, self.encoder.dim), dtype=np.float32)  # (N, D)
            vecs[texted] = encode_cached(self.encoder, [texts[i] for i in texted], settings.cache_dir)
            self.text_index = VectorIndex(self.encoder.dim, ann_threshold=settings.ann_threshold)
            self.text_index.add(vecs)
        elif settings.text_encoder != "none":
            log.info("serve: no item has text of its own (ids only): no text encoder, no text index")
        self.text_seconds = time.perf_counter() - t0
        self.live_weight = live_weight(artifact, settings)
        self.cold = ColdItems(self.model, self.catalog, store, settings, self.encoder, self.text_index)
        self.queries = Queries(artifact, settings, store, self.catalog, self.cold)
        self.scorer = Scorer(
            self.model,
            self.catalog,
            self.cold,
            popularity,
            live=LiveCounts(store, self.catalog, settings.cold_poll_seconds),
            live_weight=self.live_weight,
            text_index=self.text_index,
            torch_threads=settings.torch_threads,
        )
        self.explainer = Explainer(
            self.scorer, self.catalog, self.cold, self.text_index, settings.explain_last
        )
        self.finder = Search(
            self.queries,
            self.scorer,
            self.explainer,
            encoder=self.encoder,
            text_index=self.text_index,
            search_blend=settings.search_blend,
        )
        self.users = Users(artifact, self.catalog)
        self.cold.sync(force=True)

    # ---- facts ----------------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        """Servable items: known ones plus fully added cold-start ones (an add in flight is not yet)."""
        return self.n_known + len(self.cold)

    @property
    def n_cold(self) -> int:
        return len(self.cold)

    @property
    def event_types(self) -> tuple[str, ...]:
        """The event types the model reads (trained with actions); any other model only logs them."""
        return self.queries.event_types

    def item(self, i: int, **extra: Any) -> dict[str, Any]:
        return self.catalog.item(i, **extra)

    def item_index(self, item_id: object) -> int:
        return self.queries.item_index(item_id)

    def indices(self, ids: Sequence[object], what: str) -> np.ndarray:
        return self.queries.indices(ids, what)

    def popularity_of(self, i: int) -> int:
        return self.finder.popularity_of(i)

    def features(self) -> ItemFeatures:
        return self.scorer.features()

    # ---- recommending ---------------------------------------------------------------------------
    def recommend(self, q: Query) -> list[dict[str, Any]]:
        return self.recommend_ranked(q).items

    def recommend_ranked(self, q: Query) -> Ranked:
        """Top-k for the query, re-ranked when `q.rerank` asks for it."""
        ctx = self.queries.resolve(q)
        scores, personal = self.scorer.scores(ctx)
        lists = self.scorer.rank(scores, q.k, allowed=ctx.allowed, spec=q.rerank, history=ctx.history)
        top, values = lists.row(0)
        expl = self.explainer.explain(ctx, top, personal) if q.explain else [None] * len(top)
        items = [
            self.catalog.item(int(i), rank=r, score=float(v), explanation=e)
            for r, (i, v, e) in enumerate(zip(top, values, expl, strict=True), 1)
        ]
        return Ranked(items, lists.summaries[0] if lists.summaries else None)

    # ---- similar items and search ------------------------------------------------------------------
    def similar(self, item_id: str, k: int, by: str) -> list[dict[str, Any]]:
        return self.finder.similar(item_id, k, by)

    def search(self, text: str, q: Query, blend: float | None) -> list[dict[str, Any]]:
        return self.finder.text(text, q, blend).items

    def search_ranked(self, text: str, q: Query, blend: float | None) -> Ranked:
        return self.finder.text(text, q, blend)

    def find_titles(self, query: str, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        return self.finder.titles(query, limit, offset)

    # ---- known users ----------------------------------------------------------------------------
    def find_users(self, query: str, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        return self.users.find(query, limit, offset)

    def user_history(self, user_id: str, limit: int) -> dict[str, Any]:
        return self.users.history(user_id, limit)

    # ---- sessions and cold-start items -----------------------------------------------------------
    def add_events(
        self, session_id: str, events: Sequence[NewEvent], user_id: str | None = None
    ) -> SessionState:
        """Validate the ids (and, for a model trained with actions, the event types) against this
        catalog and model, then commit to the store (the 2xx guarantee)."""
        self.queries.check_events(events)
        if user_id is not None:
            self.queries.check_user(str(user_id))
        keys = [NewEvent(str(e.item_id), e.event, e.value, e.ts) for e in events]
        return self.store.append(session_id, keys, None if user_id is None else str(user_id))

    def add_item(self, rec: ItemRecord) -> dict[str, Any]:
        """Add an item known only by its text; it is scored through its nearest known items."""
        i = self.cold.add(rec)
        nb = self.cold.neighbours
        c, r = self.catalog, i - self.n_known
        near = [(int(j), float(x)) for j, x in zip(nb.nn[r, :5], nb.w[r, :5], strict=True) if x > 0]
        neighbors = [{"item_id": c.ids[j], "title": c.titles[j], "weight": x} for j, x in near]
        return self.item(i, neighbors=neighbors)

    def sync_cold(self, force: bool = False) -> bool:
        return self.cold.sync(force)


def catalog_print(artifact: Artifact | Path) -> CatalogPrint:
    """What a state store records of the catalog it serves (`StateStore.bind_catalog`), from a
    loaded artifact or a model folder (its item ids only: `playnext serve` checks it at once)."""
    if isinstance(artifact, Artifact):
        head = artifact.items.external[:CATALOG_HEAD].to_list()
        return CatalogPrint.of(head, len(artifact.items), artifact.info.get("dataset"))
    try:
        items = pl.scan_parquet(artifact / "items.parquet").select(Columns.ITEM_ID)
        head = items.head(CATALOG_HEAD).collect().to_series().to_list()
        n = int(items.select(pl.len()).collect().item())
        info = json.loads((artifact / "artifact.json").read_text())
    except (OSError, ValueError, pl.exceptions.PolarsError) as e:
        raise ConfigError(f"{artifact}: incomplete or corrupt model directory ({e})") from None
    return CatalogPrint.of(head, n, info.get("dataset") if isinstance(info, dict) else None)


__all__ = ["Engine", "LazyEncoder", "Query", "Ranked", "catalog_print", "has_text"]
