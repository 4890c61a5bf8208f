"""What the API does, without HTTP: recommend, explain, search, similar items, cold-start items.

One `Engine` wraps a loaded `Artifact` and reads and writes sessions, events and cold-start items
through the shared `StateStore`, so every worker (and the next engine after a model swap) sees
the same state. Histories are catalog indices (see catalog.py); the model only ever sees its own
items, so cold-start items in a history are replaced by their nearest known item (by text)
before scoring.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import torch

from playnext.artifact import Artifact
from playnext.data.events import check_event
from playnext.data.interactions import META_SCHEMA, Histories
from playnext.errors import ConfigError
from playnext.rerank import ItemFeatures, RerankSpec, rerank
from playnext.serve.catalog import Catalog, ItemRecord
from playnext.serve.errors import Conflict, NotFound, QueryError, TextOff, UnknownIds
from playnext.serve.index import VectorIndex
from playnext.serve.settings import Settings
from playnext.state import ColdItemRow, NewEvent, SessionState, StateStore
from playnext.text import TextEncoder, borrow_weights, encode_cached, item_text, make_encoder

log = logging.getLogger("playnext.serve")


@dataclass
class Query:
    """Who to recommend for, and what may be recommended."""

    user_id: str | None = None
    history: list[str] | None = None
    session_id: str | None = None
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


@dataclass
class Ranked:
    """An answer: the items, and what re-ranking did (None when it was not asked for)."""

    items: list[dict[str, Any]]
    rerank: dict[str, Any] | None = None


@dataclass
class _Context:
    """A resolved query: model user index, catalog history, model history, allowed mask."""

    user: int
    history: np.ndarray  # catalog indices, in time order
    model_history: np.ndarray  # internal model item ids (cold items mapped to known neighbours)
    allowed: np.ndarray  # (n,) bool
    n: int
    # a typed model's events of model_history: codes into Engine.event_types (-1: untyped), values
    events: np.ndarray | None = None
    values: np.ndarray | None = None


def live_weight(artifact: Artifact, settings: Settings) -> float:
    """The weight of a cold item's live event count: the setting, else what `playnext train
    --cold` chose on validation questions for this model's way of scoring cold items, else 0."""
    if settings.cold_live_weight is not None:
        return settings.cold_live_weight
    chosen = artifact.info.get("cold", {}).get("live_weights", {})
    way = "content" if getattr(artifact.model, "has_content", False) else "borrowing"
    return float(chosen.get(way, {}).get("chosen", 0.0))


@dataclass(frozen=True)
class _Cold:
    """Nearest known items (by text) of every cold-start item, with similarity weights."""

    nn: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), dtype=np.int64))  # (C, kn)
    w: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), dtype=np.float32))  # (C, kn), rows sum 1
    # a content-tower model's own vectors of the cold items: it scores them itself, no borrowing
    vectors: torch.Tensor | None = None  # (C, D)


class Engine:
    """Serves one artifact; thread-safe (reads are lock-free, catalog growth takes a lock)."""

    def __init__(
        self,
        artifact: Artifact,
        settings: Settings,
        store: StateStore,
        encoder: TextEncoder | None = None,
    ) -> None:
        self.artifact = artifact
        self.settings = settings
        self.store = store
        self.model = artifact.model
        self.n_known = len(artifact.items)
        self.catalog = Catalog(artifact.meta)
        self.popularity = np.bincount(artifact.histories.items.astype(np.int64), minlength=self.n_known)
        self._cold = _Cold()
        self._cold_seq = 0  # the newest store cold item applied here
        self._cold_checked = 0.0
        # cold items' events so far, counted from the store's log: (their ids, counts, watermark)
        self._live: tuple[tuple[str, ...], np.ndarray, int] = ((), np.zeros(0, dtype=np.int64), 0)
        self._live_checked = 0.0
        self.live_weight = live_weight(artifact, settings)
        self._lock = threading.Lock()
        b = getattr(self.model, "b_", None)  # an item-item weight matrix (EASE): exact contributions
        shape_ok = isinstance(b, torch.Tensor) and tuple(b.shape) == (self.n_known, self.n_known)
        self._item_item: torch.Tensor | None = b if shape_ok else None
        # a model trained with actions reads session events; any other only logs them
        self.event_types: tuple[str, ...] = artifact.event_types
        t0 = time.perf_counter()
        self.encoder = encoder if encoder is not None else make_encoder(settings.text_encoder)
        self.text_index: VectorIndex | None = None
        if self.encoder is not None:
            texts = [self._text(i) for i in range(self.n_known)]
            vecs = encode_cached(self.encoder, texts, settings.cache_dir)
            self.text_index = VectorIndex(self.encoder.dim, ann_threshold=settings.ann_threshold)
            self.text_index.add(vecs)
        self.text_seconds = time.perf_counter() - t0
        self._model_vectors = self.model.item_embeddings()  # (n_known, D) or None
        self._features: ItemFeatures | None = None
        self.sync_cold(force=True)

    # ---- facts ----------------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        """Servable items: known ones plus fully added cold-start ones (an add in flight is not yet)."""
        return self.n_known + len(self._cold.nn)

    @property
    def n_cold(self) -> int:
        return len(self._cold.nn)

    def _text(self, i: int) -> str:
        c = self.catalog
        return item_text(c.titles[i], c.kinds[i], c.genres[i], c.years[i])

    def item(self, i: int, **extra: Any) -> dict[str, Any]:
        r = self.catalog.record(i)
        return {
            "item_id": r.item_id,
            "title": r.title,
            "kind": r.kind,
            "genres": r.genres,
            "year": r.year,
            "cold_start": i >= self.n_known,
            **extra,
        }

    def item_index(self, item_id: object) -> int:
        """The catalog index of the item a call is about (`NotFound` when there is none)."""
        try:
            return int(self.indices([item_id], "item id")[0])
        except UnknownIds as e:
            raise NotFound("item id", e.ids) from None

    def indices(self, ids: Sequence[object], what: str) -> np.ndarray:
        """Catalog indices; an unknown id first makes us look for cold items another worker added."""
        try:
            return self.catalog.indices(ids, what)
        except UnknownIds:
            if not self.sync_cold(force=True):
                raise
            return self.catalog.indices(ids, what)

    # ---- scoring ----------------------------------------------------------------------------
    def _resolve(self, q: Query, *, check_k: bool = True) -> _Context:
        s = self.settings
        if check_k and q.k > s.max_k:
            raise QueryError(f"k={q.k} is above the limit of {s.max_k}")
        if q.history is not None and len(q.history) > s.max_history:
            raise QueryError(f"history has {len(q.history)} items; the limit is {s.max_history}")
        if q.user_id is None and q.history is None and q.session_id is None:
            raise QueryError("give a user_id, a history or a session_id")
        self.sync_cold()
        n = self.n_items
        parts: list[np.ndarray] = []
        events: list[tuple[np.ndarray, np.ndarray]] = []  # per part: codes, values
        user = -1
        if q.user_id is not None:
            if str(q.user_id) not in self.artifact.users:
                raise UnknownIds("user id", [str(q.user_id)])
            user = int(self.artifact.users.to_internal([q.user_id], kind="user")[0])
            parts.append(self.artifact.histories[user].astype(np.int64))
            events.append(self._stored_events(user))
        if q.history is not None:
            parts.append(self.indices(q.history, "item id(s) in history"))
            events.append(self._untyped(len(parts[-1])))
        if q.session_id is not None:
            sess = self.store.session(q.session_id)
            if sess is None:
                raise UnknownIds("session id", [q.session_id])
            items, codes, values = self._session_events(sess)
            parts.append(items)
            events.append((codes, values))
        history = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        allowed = self._allowed(q)
        if q.exclude_seen and len(history):
            allowed[history[history < n]] = False
        keep = self._model_mask(history)
        if not self.event_types:
            return _Context(user, history, self._to_model(history)[keep], allowed, n)
        codes = np.concatenate([e[0] for e in events]) if events else np.zeros(0, np.int32)
        values = np.concatenate([e[1] for e in events]) if events else np.zeros(0, np.float32)
        model_history = self._to_model(history)[keep]
        return _Context(user, history, model_history, allowed, n, codes[keep], values[keep])

    def _untyped(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return np.full(n, -1, np.int32), np.full(n, np.nan, np.float32)

    def _stored_events(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """A known user's training events against this model's types (untyped if not stored)."""
        h = self.artifact.histories
        lo, hi = int(h.indptr[user]), int(h.indptr[user + 1])
        if h.events is None or h.values is None or not self.event_types:
            return self._untyped(hi - lo)
        own = {t: i for i, t in enumerate(self.event_types)}
        remap = np.array([own.get(n, -1) for n in h.event_names] + [-1], dtype=np.int32)
        return remap[h.events[lo:hi]], h.values[lo:hi]

    def _session_events(self, sess: SessionState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A session's items (catalog indices) with their events against this model's types."""
        lookup = self.catalog.lookup
        if any(e.item_id not in lookup for e in sess.events):
            self.sync_cold(force=True)
        own = {t: i for i, t in enumerate(self.event_types)}
        found = [(lookup[e.item_id], e) for e in sess.events if e.item_id in lookup]
        items = np.asarray([i for i, _ in found], dtype=np.int64)
        codes = np.asarray([own.get(e.event or "", -1) for _, e in found], dtype=np.int32)
        values = np.asarray([np.nan if e.value is None else e.value for _, e in found], dtype=np.float32)
        return items, codes, values

    def check_events(self, events: Sequence[NewEvent]) -> None:
        """A model trained with actions takes only its own event types, in their value ranges
        (an `UnknownEventTypeError` names the known ones)."""
        if not self.event_types:
            return
        for e in events:
            check_event(e.event, e.value, self.event_types)

    def _history_tensor(
        self, rows: list[np.ndarray], ctx: _Context | None, masks: list[np.ndarray]
    ) -> Histories:
        """Model histories of `rows` (each `ctx.model_history[mask]`), with the events of a typed model."""
        hist = Histories.from_lists(rows)
        if ctx is None or ctx.events is None or ctx.values is None:
            return hist
        codes = np.concatenate([ctx.events[m] for m in masks]) if masks else np.zeros(0, np.int32)
        values = np.concatenate([ctx.values[m] for m in masks]) if masks else np.zeros(0, np.float32)
        return hist.with_events(codes, values, self.event_types)

    def _allowed(self, q: Query) -> np.ndarray:
        """The query's filters as one mask, so recommend and search apply them alike."""
        c = self.catalog
        exclude = self.indices(q.exclude_items, "item id(s) in exclude_items") if q.exclude_items else None
        only = self.indices(q.only_items, "item id(s) in only_items") if q.only_items is not None else None
        return c.mask(
            self.n_items,
            kinds=q.kinds,
            genres=q.genres,
            year_min=q.year_min,
            year_max=q.year_max,
            exclude=exclude,
            only=only,
        )

    def _model_mask(self, history: np.ndarray) -> np.ndarray:
        """Which history entries `_to_model` keeps (a cold item without a neighbour is dropped)."""
        is_cold = history >= self.n_known
        ci = history - self.n_known
        return ~is_cold | (ci < len(self._cold.nn))

    def _to_model(self, history: np.ndarray) -> np.ndarray:
        """Model item ids: cold items become their nearest known item, or -1 (see `_model_mask`)."""
        cold = self._cold
        out = history.copy()
        is_cold = out >= self.n_known
        if is_cold.any():
            ci = out[is_cold] - self.n_known
            ok = ci < len(cold.nn)
            mapped = np.full(len(ci), -1, dtype=np.int64)
            mapped[ok] = cold.nn[ci[ok], 0]
            out[is_cold] = mapped
        return out

    def _pin_threads(self) -> None:
        """torch's intra-op thread count belongs to the calling thread (OpenMP), and requests run
        on the server's worker threads: set it where the model runs, not once at startup."""
        n = self.settings.torch_threads
        if n and torch.get_num_threads() != n:
            torch.set_num_threads(n)

    def _model_scores(
        self, user: int, model_history: np.ndarray, ctx: _Context | None = None
    ) -> tuple[np.ndarray, bool]:
        """(n_known,) model scores, and whether they are personal (else popularity)."""
        if user < 0 and len(model_history) == 0:
            return self.popularity.astype(np.float32), False
        every = np.ones(len(model_history), dtype=bool)
        hist = self._history_tensor([model_history], ctx, [every])
        self._pin_threads()
        users = np.array([user], dtype=np.int64)
        cold = self._cold.vectors
        if cold is not None and len(cold):  # (I + C,): the model ranks the cold items itself
            s = self.model.score_new_items(users, hist, cold)[0]
        else:
            s = self.model.score(users, hist)[0]  # (I,)
        return np.nan_to_num(s.numpy().astype(np.float32), nan=-np.inf), True

    def _full_scores(self, known: np.ndarray, n: int) -> np.ndarray:
        """(n,) scores over the catalog: cold items borrow their text neighbours' model scores,
        unless the model scored them already (a content tower: `known` covers them); either way
        they gain `live_weight` · log(1 + their events so far)."""
        cold = self._cold
        n_cold = n - self.n_known
        if n_cold <= 0:
            return known[:n]
        if len(known) >= n:
            out = known[:n].copy()
        else:
            nb = known[cold.nn[:n_cold]]  # (C, kn)
            finite = np.isfinite(nb)
            w = np.where(finite, cold.w[:n_cold], 0.0)
            borrowed = (np.where(finite, nb, 0.0) * w).sum(1) / np.maximum(w.sum(1), 1e-12)
            borrowed[~finite.any(1)] = -np.inf
            out = np.concatenate([known, borrowed.astype(np.float32)])
        if self.live_weight > 0:
            out[self.n_known :] += self.live_weight * np.log1p(self.live_counts(n_cold)).astype(np.float32)
        return out

    def live_counts(self, n_cold: int) -> np.ndarray:
        """(n_cold,) events of the first `n_cold` cold items in the store's log (every worker's),
        re-read at most every `cold_poll_seconds`: only events after the last watermark, unless
        the cold set grew (new items are counted from the start of the log)."""
        ids, counts, seq = self._live
        now = time.monotonic()
        if len(ids) < n_cold or now - self._live_checked >= self.settings.cold_poll_seconds:
            self._live_checked = now
            want = tuple(self.catalog.ids[self.n_known : self.n_known + n_cold])
            grew = want[: len(ids)] != ids or len(want) > len(ids)
            got, seq = self.store.item_counts(want, after_seq=0 if grew else seq)
            base = np.zeros(len(want), dtype=np.int64) if grew else counts.copy()
            base += np.array([got.get(i, 0) for i in want], dtype=np.int64)
            self._live = (want, base, seq)
            counts = base
        return counts[:n_cold]

    def recommend(self, q: Query) -> list[dict[str, Any]]:
        return self.recommend_ranked(q).items

    def recommend_ranked(self, q: Query) -> Ranked:
        """Top-k for the query, re-ranked when `q.rerank` asks for it."""
        ctx = self._resolve(q)
        known, personal = self._model_scores(ctx.user, ctx.model_history, ctx)
        scores = self._full_scores(known, ctx.n)
        summary = None
        if q.rerank is not None and q.rerank.active:
            cand = np.flatnonzero(ctx.allowed[: len(scores)] & np.isfinite(scores))
            top, summary = self._rerank(q.rerank, scores[cand], cand, ctx, q.k)
        else:
            top = _topk(scores, q.k, ctx.allowed)
        expl: list[dict[str, Any] | None] = (
            list(self.explain(ctx, top, personal)) if q.explain else [None] * len(top)
        )
        items = [
            self.item(int(i), rank=r, score=float(scores[i]), explanation=e)
            for r, (i, e) in enumerate(zip(top, expl, strict=True), 1)
        ]
        return Ranked(items, summary)

    # ---- re-ranking ----------------------------------------------------------------------------
    def features(self) -> ItemFeatures:
        """Genres, kinds, popularity and item vectors of the servable catalog, rebuilt when
        cold-start items have been added since (vectors: the model's, else the text index's)."""
        n = self.n_items
        f = self._features
        if f is not None and f.n == n:
            return f
        c = self.catalog
        pop = np.zeros(n)
        pop[: self.n_known] = self.popularity
        vectors = self._model_vectors
        if vectors is not None and n > self.n_known:  # a cold item: its text neighbours' mean
            cold = self._cold
            vectors = np.concatenate(
                [vectors, (vectors[cold.nn[: n - self.n_known]] * cold.w[: n - self.n_known, :, None]).sum(1)]
            )
        elif vectors is None and self.text_index is not None:
            vectors = self.text_index.vectors[:n]
        f = ItemFeatures.from_lists(c.genres[:n], c.kinds[:n], pop, vectors)
        self._features = f
        return f

    def _rerank(
        self, spec: RerankSpec, scores: np.ndarray, cand: np.ndarray, ctx: _Context, k: int
    ) -> tuple[np.ndarray, dict[str, Any]]:
        features = self.features()  # an unknown quota kind is a ConfigError: a 422 naming the known
        out = rerank(scores, cand, ctx.history, features, spec, k)
        return out.items, out.summary(spec)

    # ---- explanations -----------------------------------------------------------------------
    def explain(self, ctx: _Context, top: np.ndarray, personal: bool) -> list[dict[str, Any]]:
        """For each recommended item, the history items that drove it (see docs/serving.md)."""
        out: list[dict[str, Any] | None] = [None] * len(top)
        known_pos = [p for p, i in enumerate(top) if i < self.n_known]
        for p, i in enumerate(top):
            if i >= self.n_known:
                out[p] = self._explain_cold(int(i))
        hist = ctx.model_history
        if known_pos and personal and len(hist):
            targets = top[known_pos]
            method, cand, contrib = self._contributions(ctx, targets)  # (H,), (H, T)
            for t, p in enumerate(known_pos):
                col = contrib[:, t]
                order = [h for h in np.argsort(-col, kind="stable")[:2] if col[h] > 1e-6]
                if order:
                    out[p] = _because(method, [(int(cand[h]), float(col[h])) for h in order], self)
        # no positive model contribution: the most text-similar history item, if text is on
        for p in known_pos:
            if out[p] is None:
                out[p] = self._explain_text(ctx, int(top[p])) if len(hist) else None
            if out[p] is None:
                msg = "Popular overall" if not personal else "Scored highly for this history by the model"
                out[p] = {"method": "popularity" if not personal else "model", "text": msg, "because": []}
        return [e for e in out if e is not None]

    def _contributions(self, ctx: _Context, targets: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
        """Each history item's contribution to each target's score: exact for item-item models,
        else the score drop when it is left out (over the last `explain_last` distinct items)."""
        hist = ctx.model_history
        if self._item_item is not None:
            cand = np.unique(hist)
            b = self._item_item[torch.from_numpy(cand)][:, torch.from_numpy(targets)]  # (H, T)
            return "item-item", cand, b.numpy()
        cand = np.array(list(dict.fromkeys(hist[::-1].tolist()))[: self.settings.explain_last])
        masks = [np.ones(len(hist), dtype=bool)] + [hist != h for h in cand]
        rows = [hist[m] for m in masks]
        users = np.full(len(rows), ctx.user, dtype=np.int64)
        self._pin_threads()
        raw = self.model.score(users, self._history_tensor(rows, ctx, masks))[:, torch.from_numpy(targets)]
        s = torch.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0).numpy()
        return "leave-one-out", cand, s[0][None, :] - s[1:]

    def _explain_text(self, ctx: _Context, target: int) -> dict[str, Any] | None:
        if self.text_index is None or not len(ctx.history):
            return None
        last = np.array(list(dict.fromkeys(ctx.history[::-1].tolist()))[: self.settings.explain_last])
        vecs = self.text_index.vectors
        sims = vecs[last] @ vecs[target]  # (H,)
        h = int(np.argmax(sims))
        if sims[h] <= 0:
            return None
        return _because("text-similarity", [(int(last[h]), float(sims[h]))], self)

    def _explain_cold(self, i: int) -> dict[str, Any]:
        c = self._cold
        row = i - self.n_known
        pairs = [(int(j), float(w)) for j, w in zip(c.nn[row, :2], c.w[row, :2], strict=True)]
        e = _because("cold-start", pairs, self)
        e["text"] = f"New item; reads like “{self.catalog.titles[pairs[0][0]]}”"
        return e

    # ---- similar items and search --------------------------------------------------------------
    def similar(self, item_id: str, k: int, by: str) -> list[dict[str, Any]]:
        if k > self.settings.max_k:
            raise QueryError(f"k={k} is above the limit of {self.settings.max_k}")
        i = self.item_index(item_id)
        n = self.n_items
        if i >= n:
            raise NotFound("item id", [str(item_id)])
        allowed = np.ones(n, dtype=bool)
        allowed[i] = False
        if by == "model" and i < self.n_known:
            known, _ = self._model_scores(-1, np.array([i]))
            scores = self._full_scores(known, n)
            top = _topk(scores, k, allowed)
            method = "co-occurrence"
        else:
            index = self._require_text()
            vec = index.vectors[i][None, :]
            s, top = index.search(vec, k, allowed=allowed)
            top, scores = top[0][top[0] >= 0], np.zeros(n, dtype=np.float32)
            scores[top] = s[0][: len(top)]
            method = "text-similarity"
        title = self.catalog.titles[i]
        return [
            self.item(
                int(j),
                rank=r,
                score=float(scores[j]),
                explanation={
                    "method": method,
                    "text": f"Similar to “{title}”",
                    "because": [{"item_id": self.catalog.ids[i], "title": title, "weight": float(scores[j])}],
                },
            )
            for r, j in enumerate(top, 1)
        ]

    def _require_text(self) -> VectorIndex:
        if self.text_index is None or self.encoder is None:
            raise TextOff()
        return self.text_index

    def search(self, text: str, q: Query, blend: float | None) -> list[dict[str, Any]]:
        return self.search_ranked(text, q, blend).items

    def search_ranked(self, text: str, q: Query, blend: float | None) -> Ranked:
        """Items matching a natural-language query, blended with taste when a history is given:
        score = (1 − α)·cos(query, item text) + α·taste percentile, α = `search_blend`; then
        re-ranked over the text candidates when `q.rerank` asks for it."""
        index = self._require_text()
        assert self.encoder is not None
        if q.rerank is not None and q.rerank.active and q.rerank.relevance == "prob":
            # a blend of cosines and percentiles is no logit: its softmax would be near uniform
            raise ConfigError("rerank.relevance=prob: /search scores are not model logits; use rank")
        alpha = self.settings.search_blend if blend is None else blend
        has_who = q.user_id is not None or q.history is not None or q.session_id is not None
        if has_who:
            ctx = self._resolve(q)
        else:
            if q.k > self.settings.max_k:
                raise QueryError(f"k={q.k} is above the limit of {self.settings.max_k}")
            empty = np.zeros(0, np.int64)
            ctx = _Context(-1, empty, empty, self._allowed(q), self.n_items)
        qv = self.encoder.encode([text])  # (1, D)
        n_cand = max(200, 10 * q.k)
        sims, cand = index.search(qv, n_cand, allowed=ctx.allowed[: len(index)])
        keep = cand[0] >= 0
        cand, sims_c = cand[0][keep], sims[0][keep]
        taste = np.zeros(len(cand), dtype=np.float32)
        personal = False
        if has_who and (ctx.user >= 0 or len(ctx.model_history)):
            known, personal = self._model_scores(ctx.user, ctx.model_history, ctx)
            taste = _percentile(self._full_scores(known, ctx.n))[cand]
        a = alpha if personal else 0.0
        final = (1 - a) * sims_c + a * taste
        summary = None
        if q.rerank is not None and q.rerank.active and len(cand):
            top, summary = self._rerank(q.rerank, final, cand, ctx, q.k)
            where = {int(c): p for p, c in enumerate(cand)}
            order = np.array([where[int(i)] for i in top], dtype=np.int64)
        else:
            order = np.argsort(-final, kind="stable")[: q.k]
        top = cand[order]
        expl = self.explain(ctx, top, personal) if personal and q.explain else [None] * len(top)
        out = []
        for r, (o, e) in enumerate(zip(order, expl, strict=True), 1):
            why = f"Matches “{text}” ({sims_c[o]:.2f})"
            if personal:
                why += f"; fits your taste (top {max(1, round(100 * (1 - float(taste[o]))))}%)"
            because = e["because"] if e else []
            out.append(
                self.item(
                    int(cand[o]),
                    rank=r,
                    score=float(final[o]),
                    text_score=float(sims_c[o]),
                    taste_score=float(taste[o]) if personal else None,
                    explanation={
                        "method": "text+taste" if personal else "text",
                        "text": why,
                        "because": because,
                    },
                )
            )
        return Ranked(out, summary)

    def find_titles(self, query: str, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        n = self.n_items
        rows, rank = self.catalog.search_titles(query, n)
        pop = np.concatenate([self.popularity, np.zeros(max(0, n - self.n_known), dtype=np.int64)])[rows]
        order = np.lexsort((rows, -pop, rank))
        page = rows[order][offset : offset + limit]
        return len(rows), [self.item(int(i), popularity=self.popularity_of(int(i))) for i in page]

    def popularity_of(self, i: int) -> int:
        return int(self.popularity[i]) if i < self.n_known else 0

    # ---- sessions -----------------------------------------------------------------------------
    def add_events(
        self, session_id: str, events: Sequence[NewEvent], user_id: str | None = None
    ) -> SessionState:
        """Validate the ids (and, for a model trained with actions, the event types) against this
        catalog and model, then commit to the store (the 2xx guarantee)."""
        self.indices([e.item_id for e in events], "item id(s) in events")
        self.check_events(events)
        if user_id is not None and str(user_id) not in self.artifact.users:
            raise UnknownIds("user id", [str(user_id)])
        keys = [NewEvent(str(e.item_id), e.event, e.value, e.ts) for e in events]
        return self.store.append(session_id, keys, None if user_id is None else str(user_id))

    def session_items(self, sess: SessionState) -> np.ndarray:
        """A session's items as catalog indices; items this model's catalog lacks (logged under
        another model) are left out rather than failing the request."""
        lookup = self.catalog.lookup
        idx = [lookup.get(i, -1) for i in sess.item_ids()]
        if any(i < 0 for i in idx) and self.sync_cold(force=True):
            idx = [lookup.get(i, -1) for i in sess.item_ids()]
        return np.asarray([i for i in idx if i >= 0], dtype=np.int64)

    # ---- cold-start items -------------------------------------------------------------------
    def add_item(self, rec: ItemRecord) -> dict[str, Any]:
        """Add an item known only by its text; it is scored through its nearest known items.

        The store commits it first (so every worker and the next retrain see it), then this
        worker applies it; the others pick it up on their next poll or on first mention."""
        self._require_text()
        if rec.item_id in self.catalog.lookup:
            raise Conflict(f"item id {rec.item_id} already exists")
        row = self.store.add_cold_item(rec.item_id, rec.title, rec.kind or "", rec.genres, rec.year)
        self.sync_cold(force=True)
        i = self.catalog.lookup[row.item_id]
        c = self._cold
        r = i - self.n_known
        return self.item(
            i,
            neighbors=[
                {
                    "item_id": self.catalog.ids[int(j)],
                    "title": self.catalog.titles[int(j)],
                    "weight": float(x),
                }
                for j, x in zip(c.nn[r, :5], c.w[r, :5], strict=True)
                if x > 0
            ],
        )

    def sync_cold(self, force: bool = False) -> bool:
        """Apply cold items committed by any worker since the last look; True when some were new.

        Without `force` the store is asked at most every `cold_poll_seconds`."""
        if self.encoder is None or self.text_index is None:
            return False
        now = time.monotonic()
        if not force and now - self._cold_checked < self.settings.cold_poll_seconds:
            return False
        self._cold_checked = now
        with self._lock:
            rows = self.store.cold_items(after_seq=self._cold_seq)
            if rows:
                self._cold_seq = rows[-1].seq
            # a retrained model may know some already
            rows = [r for r in rows if r.item_id not in self.catalog.lookup]
            if rows:
                texts = [item_text(r.title, r.kind or None, r.genres, r.year) for r in rows]
                vecs = self.encoder.encode(texts)  # (R, D): one batch, however many were added
                for r, row in enumerate(rows):
                    self._apply_cold(row, vecs[r : r + 1])
        return bool(rows)

    def _apply_cold(self, row: ColdItemRow, vec: np.ndarray) -> None:
        index = self.text_index
        assert index is not None
        kind = row.kind or None
        known = np.zeros(len(index), dtype=bool)
        known[: self.n_known] = True
        sims, nn = index.search(vec, self.settings.cold_neighbors, allowed=known)
        ok = nn[0] >= 0
        nn_row, sim_row = nn[0][ok], sims[0][ok]
        w = borrow_weights(sim_row[None], self.settings.cold_temperature)[0]
        kn = self.settings.cold_neighbors
        nn_pad = np.full(kn, nn_row[0], dtype=np.int64)
        w_pad = np.zeros(kn, dtype=np.float32)
        nn_pad[: len(nn_row)], w_pad[: len(nn_row)] = nn_row, w
        self.catalog.append(ItemRecord(row.item_id, row.title, kind, list(row.genres), row.year))
        index.add(vec)
        old = self._cold
        vectors = old.vectors
        if getattr(self.model, "has_content", False):
            meta = pl.DataFrame(
                [{"item_id": row.item_id, "title": row.title, "genres": list(row.genres), "year": row.year,
                  "kind": kind}],
                schema=META_SCHEMA,
            )  # fmt: skip
            v = self.model.content_vectors(meta)  # (1, D)
            vectors = v if vectors is None else torch.cat([vectors, v])
        self._cold = _Cold(
            np.concatenate([old.nn.reshape(-1, kn), nn_pad[None]]),
            np.concatenate([old.w.reshape(-1, kn), w_pad[None]]),
            vectors,
        )


def _topk(scores: np.ndarray, k: int, allowed: np.ndarray) -> np.ndarray:
    """Indices of the k best finite allowed scores, best first (ties: lower index first)."""
    ok = np.flatnonzero(allowed[: len(scores)] & np.isfinite(scores))
    if len(ok) == 0:
        return ok
    s = scores[ok]
    if len(ok) > k:
        part = np.argpartition(-s, k - 1)[:k]
        ok, s = ok[part], s[part]
    order = np.lexsort((ok, -s))
    return ok[order]


def _percentile(scores: np.ndarray) -> np.ndarray:
    """Each score's rank among the finite scores, in [0, 1] (1 = the best)."""
    finite = np.isfinite(scores)
    out = np.zeros(len(scores), dtype=np.float32)
    m = int(finite.sum())
    if m > 1:
        ranks = np.empty(m, dtype=np.float64)
        ranks[np.argsort(scores[finite], kind="stable")] = np.arange(m)
        out[finite] = ranks / (m - 1)
    return out


def _because(method: str, pairs: list[tuple[int, float]], engine: Engine) -> dict[str, Any]:
    c = engine.catalog
    first = c.titles[pairs[0][0]]
    return {
        "method": method,
        "text": f"Because you liked “{first}”",
        "because": [{"item_id": c.ids[j], "title": c.titles[j], "weight": w} for j, w in pairs],
    }
