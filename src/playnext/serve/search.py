"""Finding items: similar items (by the model or by text), natural-language search, title search.

Text search retrieves candidates from the text index, blends in taste when someone is behind
the query, and ranks them through the same path as /recommend (`Scorer.rank_among`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from playnext.errors import ConfigError
from playnext.serve.catalog import Catalog
from playnext.serve.errors import NotFound, TextOff
from playnext.serve.explain import Explainer
from playnext.serve.index import VectorIndex
from playnext.serve.query import Context, Queries, Query, Ranked
from playnext.serve.rank import Scorer
from playnext.text import TextEncoder


class Search:
    """Similar items, text search and title search over the servable catalog."""

    def __init__(
        self,
        queries: Queries,
        scorer: Scorer,
        explainer: Explainer,
        *,
        encoder: TextEncoder | None,
        text_index: VectorIndex | None,
        search_blend: float,
    ) -> None:
        self.queries = queries
        self.scorer = scorer
        self.explainer = explainer
        self.catalog: Catalog = queries.catalog
        self.encoder = encoder
        self.text_index = text_index
        self.search_blend = search_blend

    def _text(self) -> tuple[TextEncoder, VectorIndex]:
        if self.text_index is None or self.encoder is None:
            raise TextOff()
        return self.encoder, self.text_index

    def similar(self, item_id: str, k: int, by: str) -> list[dict[str, Any]]:
        """Items like `item_id`: what the model recommends after it alone (`model`; cold items
        always use text), or the nearest item texts (`text`)."""
        self.queries.check_k(k)
        i = self.queries.item_index(item_id)
        n = self.queries.n_items
        if i >= n:  # added by another worker, not applied here yet
            raise NotFound("item id", [str(item_id)])
        allowed = np.ones(n, dtype=bool)
        allowed[i] = False
        if by == "model" and i < self.catalog.n_known:
            alone = np.array([i])
            scores, _ = self.scorer.scores(Context(-1, alone, alone, allowed, n))
            lists = self.scorer.rank(scores, k, allowed=allowed)
            method = "co-occurrence"
        else:
            _, index = self._text()
            sims, found = index.search(index.vectors[i][None, :], k, allowed=allowed)  # (1, k) each
            keep = found[0] >= 0
            lists = self.scorer.rank_among(found[0][keep], sims[0][keep], n, k)
            method = "text-similarity"
        c = self.catalog
        top, values = lists.row(0)
        because = {"item_id": c.ids[i], "title": c.titles[i]}
        return [
            c.item(
                int(j),
                rank=r,
                score=float(v),
                explanation={
                    "method": method,
                    "text": f"Similar to “{c.titles[i]}”",
                    "because": [{**because, "weight": float(v)}],
                },
            )
            for r, (j, v) in enumerate(zip(top, values, strict=True), 1)
        ]

    def text(self, text: str, q: Query, blend: float | None) -> Ranked:
        """Items matching a natural-language query, blended with taste when a history is given:
        score = (1 − α)·cos(query, item text) + α·taste percentile, α = `search_blend`; then
        re-ranked over the text candidates when `q.rerank` asks for it."""
        encoder, index = self._text()
        if q.rerank is not None and q.rerank.active and q.rerank.relevance == "prob":
            # a blend of cosines and percentiles is no logit: its softmax would be near uniform
            raise ConfigError("rerank.relevance=prob: /search scores are not model logits; use rank")
        alpha = self.search_blend if blend is None else blend
        ctx = self.queries.resolve(q) if q.has_who else self.queries.anonymous(q)
        qv = encoder.encode([text])  # (1, D)
        sims, cand = index.search(qv, max(200, 10 * q.k), allowed=ctx.allowed[: len(index)])
        keep = cand[0] >= 0
        cand, sims_c = cand[0][keep], sims[0][keep]
        taste = np.zeros(len(cand), dtype=np.float32)
        personal = False
        if q.has_who and (ctx.user >= 0 or len(ctx.model_history)):
            scores, personal = self.scorer.scores(ctx)
            taste = _percentile(scores)[cand]
        a = alpha if personal else 0.0
        final = (1 - a) * sims_c + a * taste
        spec = q.rerank if len(cand) else None
        lists = self.scorer.rank_among(cand, final, ctx.n, q.k, spec=spec, history=ctx.history)
        top, _ = lists.row(0)
        where = {int(c): p for p, c in enumerate(cand)}
        order = np.array([where[int(i)] for i in top], dtype=np.int64)
        expl = self.explainer.explain(ctx, top, personal) if personal and q.explain else [None] * len(top)
        out = []
        for r, (o, e) in enumerate(zip(order, expl, strict=True), 1):
            why = f"Matches “{text}” ({sims_c[o]:.2f})"
            if personal:
                why += f"; fits your taste (top {max(1, round(100 * (1 - float(taste[o]))))}%)"
            out.append(
                self.catalog.item(
                    int(cand[o]),
                    rank=r,
                    score=float(final[o]),
                    text_score=float(sims_c[o]),
                    taste_score=float(taste[o]) if personal else None,
                    explanation={
                        "method": "text+taste" if personal else "text",
                        "text": why,
                        "because": e["because"] if e else [],
                    },
                )
            )
        return Ranked(out, lists.summaries[0] if lists.summaries else None)

    def titles(self, query: str, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        """Titles matching `query` (see `Catalog.search_titles`), ties by popularity: (total, page)."""
        n = self.queries.n_items
        rows, rank = self.catalog.search_titles(query, n)
        known = self.scorer.popularity
        pop = np.zeros(max(n, len(known)), dtype=np.int64)
        pop[: len(known)] = known
        order = np.lexsort((rows, -pop[rows], rank))
        page = rows[order][offset : offset + limit]
        return len(rows), [self.catalog.item(int(i), popularity=self.popularity_of(int(i))) for i in page]

    def popularity_of(self, i: int) -> int:
        """Item i's training events (0 for a cold item)."""
        pop = self.scorer.popularity
        return int(pop[i]) if i < len(pop) else 0


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
