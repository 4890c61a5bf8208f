"""Scores over the servable catalog, and lists from them through the one ranking path.

The model scores its own items; cold-start items borrow their text neighbours' scores
(`ranking.borrowed_scores`) unless a content tower scored them itself, and gain
`live_weight` · log(1 + their events so far). Lists come from `ranking.rank`, exactly as the
Python API, the CLI and batch output make them.
"""

from __future__ import annotations

import numpy as np
import torch

from playnext import ranking
from playnext.data.interactions import Histories
from playnext.models.base import Recommender
from playnext.rerank import ItemFeatures, RerankSpec
from playnext.serve.catalog import Catalog
from playnext.serve.cold import ColdItems, LiveCounts
from playnext.serve.index import VectorIndex
from playnext.serve.query import Context


class Scorer:
    """Model scores for a resolved query, catalog-wide scores, and ranked lists."""

    def __init__(
        self,
        model: Recommender,
        catalog: Catalog,
        cold: ColdItems,
        popularity: np.ndarray,
        *,
        live: LiveCounts,
        live_weight: float,
        text_index: VectorIndex | None,
        torch_threads: int,
    ) -> None:
        self.model = model
        self.catalog = catalog
        self.cold = cold
        self.popularity = popularity
        self.live = live
        self.live_weight = live_weight
        self.text_index = text_index
        self.torch_threads = torch_threads
        self.n_known = catalog.n_known
        self._model_vectors = model.item_embeddings()  # (n_known, D) or None
        self._features: ItemFeatures | None = None

    # ---- scores ---------------------------------------------------------------------------------
    def model_rows(self, users: np.ndarray, hist: Histories) -> torch.Tensor:
        """The model's (B, I) scores, on this thread's `torch_threads`."""
        self._pin_threads()
        return self.model.score(users, hist)

    def _pin_threads(self) -> None:
        """torch's intra-op thread count belongs to the calling thread (OpenMP), and requests run
        on the server's worker threads: set it where the model runs, not once at startup."""
        n = self.torch_threads
        if n and torch.get_num_threads() != n:
            torch.set_num_threads(n)

    def model_scores(self, ctx: Context) -> tuple[np.ndarray, bool]:
        """(n_known,) model scores, or (n_known + C,) when a content tower scores the cold items
        itself; and whether they are personal (else popularity: no user, no history)."""
        if ctx.user < 0 and len(ctx.model_history) == 0:
            return self.popularity.astype(np.float32), False
        hist = ctx.model_histories([np.ones(len(ctx.model_history), dtype=bool)])
        users = np.array([ctx.user], dtype=np.int64)
        vectors = self.cold.neighbours.vectors
        if vectors is not None and len(vectors):  # (I + C,): the model ranks the cold items itself
            self._pin_threads()
            s = self.model.score_new_items(users, hist, vectors)[0]
        else:
            s = self.model_rows(users, hist)[0]  # (I,)
        return np.nan_to_num(s.numpy().astype(np.float32), nan=-np.inf), True

    def scores(self, ctx: Context) -> tuple[np.ndarray, bool]:
        """(ctx.n,) scores over the servable catalog, and whether they are personal."""
        known, personal = self.model_scores(ctx)
        return self.catalog_scores(known, ctx.n), personal

    def catalog_scores(self, known: np.ndarray, n: int) -> np.ndarray:
        """(n,) scores: cold items borrow their text neighbours' model scores, unless the model
        scored them already (`known` covers them); either way they gain their live counts."""
        n_cold = n - self.n_known
        if n_cold <= 0:
            return known[:n]
        if len(known) >= n:
            out = known[:n].copy()
        else:
            nb = self.cold.neighbours
            out = np.concatenate([known, ranking.borrowed_scores(known, nb.nn[:n_cold], nb.w[:n_cold])])
        if self.live_weight > 0:
            out[self.n_known :] += self.live_weight * np.log1p(self.live(n_cold)).astype(np.float32)
        return out

    # ---- lists ----------------------------------------------------------------------------------
    def rank(
        self,
        scores: np.ndarray,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        spec: RerankSpec | None = None,
        history: np.ndarray | None = None,
    ) -> ranking.Lists:
        """One list from (n,) scores: `ranking.rank` over the `allowed` items, re-ranked by `spec`
        when active (calibration and novelty read `history`, catalog indices). Changes `scores`."""
        active = spec is not None and spec.active
        return ranking.rank(
            torch.from_numpy(scores)[None],  # (1, n)
            k,
            allowed=allowed,
            rerank_spec=spec if active else None,
            features=self.features() if active else None,
            history=Histories.from_lists([history]) if history is not None else None,
        )

    def rank_among(
        self,
        cand: np.ndarray,
        values: np.ndarray,
        n: int,
        k: int,
        *,
        spec: RerankSpec | None = None,
        history: np.ndarray | None = None,
    ) -> ranking.Lists:
        """One list over a retrieved candidate set (text search): the candidates' values, every
        other item out, then the same ranking path."""
        scores = np.full(n, -np.inf, dtype=np.float32)
        scores[cand] = values
        return self.rank(scores, k, spec=spec, history=history)

    # ---- re-ranking features ----------------------------------------------------------------------
    def features(self) -> ItemFeatures:
        """Genres, kinds, popularity and item vectors of the servable catalog, rebuilt when
        cold-start items have been added since (vectors: the model's, else the text index's)."""
        nb = self.cold.neighbours
        n = self.n_known + len(nb)
        f = self._features
        if f is not None and f.n == n:
            return f
        c = self.catalog
        pop = np.zeros(n)
        pop[: self.n_known] = self.popularity
        vectors = self._model_vectors
        if vectors is not None and len(nb):  # a cold item: its text neighbours' mean
            vectors = np.concatenate([vectors, (vectors[nb.nn] * nb.w[:, :, None]).sum(1)])
        elif vectors is None and self.text_index is not None:
            vectors = self.text_index.vectors[:n]
        f = ItemFeatures.from_lists(c.genres[:n], c.kinds[:n], pop, vectors)
        self._features = f
        return f
