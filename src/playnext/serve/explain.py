"""Why each item was recommended: the history items that drove it.

Three ways, best first: exact contributions when the model scores history · item-item weights
(EASE), else the score drop when a history item is left out (over the last `explain_last`
distinct ones); a cold item names the known items it borrows from. With no positive model
contribution the most text-similar history item explains it, else popularity or "the model".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from playnext.serve.catalog import Catalog
from playnext.serve.cold import ColdItems
from playnext.serve.index import VectorIndex
from playnext.serve.query import Context
from playnext.serve.rank import Scorer

Explanation = dict[str, Any]


class Explainer:
    """Explanations for one model's lists (see docs/serving.md)."""

    def __init__(
        self,
        scorer: Scorer,
        catalog: Catalog,
        cold: ColdItems,
        text_index: VectorIndex | None,
        explain_last: int,
    ) -> None:
        self.scorer = scorer
        self.catalog = catalog
        self.cold = cold
        self.text_index = text_index
        self.explain_last = explain_last
        self.n_known = catalog.n_known
        b = scorer.model.item_item()  # exact contributions, when the model has them
        shape_ok = b is not None and tuple(b.shape) == (self.n_known, self.n_known)
        self.item_item: torch.Tensor | None = b if shape_ok else None

    def explain(self, ctx: Context, top: np.ndarray, personal: bool) -> list[Explanation]:
        """One explanation per item of `top` (catalog indices), in order."""
        out: list[Explanation | None] = [None] * len(top)
        known_pos = [p for p, i in enumerate(top) if i < self.n_known]
        for p, i in enumerate(top):
            if i >= self.n_known:
                out[p] = self._cold(int(i))
        hist = ctx.model_history
        if known_pos and personal and len(hist):
            method, cand, contrib = self._contributions(ctx, top[known_pos])  # (H,), (H, T)
            for t, p in enumerate(known_pos):
                col = contrib[:, t]
                order = [h for h in np.argsort(-col, kind="stable")[:2] if col[h] > 1e-6]
                if order:
                    out[p] = self._because(method, [(int(cand[h]), float(col[h])) for h in order])
        # no positive model contribution: the most text-similar history item, if text is on
        for p in known_pos:
            if out[p] is None:
                out[p] = self._text(ctx, int(top[p])) if len(hist) else None
            if out[p] is None:
                msg = "Popular overall" if not personal else "Scored highly for this history by the model"
                out[p] = {"method": "popularity" if not personal else "model", "text": msg, "because": []}
        return [e for e in out if e is not None]

    def _contributions(self, ctx: Context, targets: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
        """Each history item's contribution to each target's score: exact for item-item models,
        else the score drop when it is left out (over the last `explain_last` distinct items)."""
        hist = ctx.model_history
        if self.item_item is not None:
            cand = np.unique(hist)
            b = self.item_item[torch.from_numpy(cand)][:, torch.from_numpy(targets)]  # (H, T)
            return "item-item", cand, b.numpy()
        cand = np.array(list(dict.fromkeys(hist[::-1].tolist()))[: self.explain_last])
        masks = [np.ones(len(hist), dtype=bool)] + [hist != h for h in cand]
        users = np.full(len(masks), ctx.user, dtype=np.int64)
        raw = self.scorer.model_rows(users, ctx.model_histories(masks))[:, torch.from_numpy(targets)]
        s = torch.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0).numpy()  # (1 + H, T)
        return "leave-one-out", cand, s[0][None, :] - s[1:]

    def _text(self, ctx: Context, target: int) -> Explanation | None:
        if self.text_index is None or not len(ctx.history):
            return None
        last = np.array(list(dict.fromkeys(ctx.history[::-1].tolist()))[: self.explain_last])
        vecs = self.text_index.vectors
        sims = vecs[last] @ vecs[target]  # (H,)
        h = int(np.argmax(sims))
        if sims[h] <= 0:
            return None
        return self._because("text-similarity", [(int(last[h]), float(sims[h]))])

    def _cold(self, i: int) -> Explanation:
        nb = self.cold.neighbours
        row = i - self.n_known
        pairs = [(int(j), float(w)) for j, w in zip(nb.nn[row, :2], nb.w[row, :2], strict=True)]
        e = self._because("cold-start", pairs)
        e["text"] = f"New item; reads like “{self.catalog.titles[pairs[0][0]]}”"
        return e

    def _because(self, method: str, pairs: list[tuple[int, float]]) -> Explanation:
        c = self.catalog
        return {
            "method": method,
            "text": f"Because you liked “{c.titles[pairs[0][0]]}”",
            "because": [{"item_id": c.ids[j], "title": c.titles[j], "weight": w} for j, w in pairs],
        }
