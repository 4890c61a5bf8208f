"""The re-rankers: pure functions from (candidate scores, candidate items, history) to a list.

    r_i   = 1 / log2(1 + rank_i)                     relevance = rank (the default)
    r_i   = exp(s_i) / Σ_{j ∈ C} exp(s_j)            relevance = prob
    r_i  ← r_i − w · r_max · log(1 + pop_i) / log(1 + max pop)                          novelty
    r_i  ← r_i / log2(2 + t)   at the t-th pick (t = 0 …)                               slots = dcg
    g_i   = (1 − λ_c) · r_i − λ_c · KL(p ‖ q̃(S ∪ {i} + (k − |S| − 1)·p))              calibration
    g_i  ← (1 − λ_m) · g_i − λ_m · max_{j ∈ S} sim(i, j)                               MMR
    S    ← S ∪ {argmax g_i over the items quotas allow}                                 k times

rank_i is the item's place in the model's order of the pool, so rank relevance is the weight
NDCG gives that place: scale-free (λ means the same for any model's scores, EASE's or a search
blend's) and, like NDCG, dear at the head of the list and cheap further down. prob is Steck's own
relevance: the model's softmax probability of item i over every candidate C (the catalog less
seen and filtered items), so Σ_S r is the list's expected number of hits and, with one λ for every
user, the greedy spends accuracy where the model is unsure rather than where it is sure — the
per-user lists then solve "most expected hits for a total miscalibration" (a Lagrangian with
multiplier λ/(1 − λ) expected hits per nat). That needs scores that are softmax logits (SASRec,
HSTU, GRU4Rec trained with a softmax loss), and λ sits on that scale: about 0.02, not 0.3.
r_max (1 with rank relevance) keeps novelty's weight relative to the model's first item.
p is the history's category mix (each item's genres weighted 1/|genres|), q the list's, and
q̃ = (1 − α)·q + α·p (Steck, RecSys 2018). Adding the item with the best total objective is the
same as adding the one with the best marginal gain, since the current list's terms are common to
every candidate.

Lookahead (`calibrate.lookahead`, the default): the KL a pick is judged by is that of the list
completed with the k − |S| − 1 open slots at p — restricted to p's largest categories, as many as
the open slots can carry (open × the pool's mean categories per item), renormalised — an
estimate of the *final* list's KL, which is what the objective and the metric score. Steck's
greedy (lookahead off) judges the partial list instead, whose KL swings most at the first
picks: one item cannot match a mix, so the head of the list, where NDCG weighs most, goes to
whatever matches p best. With lookahead an early pick costs only the miscalibration the rest
of the list could not undo, and the tail corrects the mix. `slots = dcg` weighs each slot's
relevance as NDCG weighs the slot, so with prob relevance the greedy trades the list's expected
DCG (not its expected hits) against KL.

Everything runs over a pool, the model's top `pool` items (quotas and calibration add the best
few of a kind or genre the list needs), so a request costs about O(k · pool · categories), never
O(k · catalog).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from playnext.data.interactions import Histories
from playnext.errors import ConfigError
from playnext.rerank.features import ItemFeatures
from playnext.rerank.spec import RerankSpec


@dataclass(frozen=True)
class Relaxed:
    """A quota the list could not meet: which one, for which kind or genre, wanted and got."""

    constraint: str  # "min_per_kind" | "max_per_genre"
    key: str  # the kind or genre
    wanted: int  # the minimum asked, or the maximum allowed
    got: int

    def as_dict(self) -> dict[str, Any]:
        return {"constraint": self.constraint, "key": self.key, "wanted": self.wanted, "got": self.got}


@dataclass
class Reranked:
    """The re-ranked list (catalog indices, best first) and what was done to make it."""

    items: np.ndarray
    applied: list[str] = field(default_factory=list)
    relaxed: list[Relaxed] = field(default_factory=list)
    pool: int = 0
    similarity: str | None = None  # what MMR compared: "embedding" | "genres"

    def summary(self, spec: RerankSpec) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "params": spec.describe(),
            "pool": self.pool,
            "similarity": self.similarity,
            "relaxed": [r.as_dict() for r in self.relaxed],
        }


def rerank(
    scores: np.ndarray,
    items: np.ndarray,
    history: np.ndarray,
    features: ItemFeatures,
    spec: RerankSpec,
    k: int,
) -> Reranked:
    """The top-k of `items` re-ranked by `spec`.

    `scores` (C,) are the model's scores of the candidates `items` (C,) — already filtered (seen
    items, filters, -inf removed); `history` holds catalog indices. Ties keep the model's order
    (then the lower index). Batch jobs call this once per user, or `rerank_rows` on a matrix.
    """
    check(spec, features)
    scores = np.asarray(scores, dtype=np.float64)
    items = np.asarray(items, dtype=np.int64)
    pool_pos = _pool(scores, items, np.asarray(history, dtype=np.int64), features, spec, k)
    cand, s = items[pool_pos], scores[pool_pos]
    if not spec.active or len(cand) == 0:
        return Reranked(cand[:k], spec.applied, [], len(cand))
    rel = _relevance(s, cand, features, spec, _logsumexp(scores) if spec.relevance == "prob" else 0.0)
    picked, similarity = _greedy(rel, cand, history, features, spec, min(k, len(cand)))
    out = cand[picked]
    return Reranked(out, spec.applied, _relaxed(out, features, spec), len(cand), similarity)


def check(spec: RerankSpec, features: ItemFeatures) -> None:
    """What the spec asks of this catalog exists: a ConfigError (CLI exit 2, API 422) if not."""
    if spec.quota is not None:
        bad = [kind for kind in spec.quota.min_per_kind if kind not in features.kind_names]
        if bad:
            raise ConfigError(
                f"rerank.quota.min_per_kind: unknown kind(s) {', '.join(bad)}; "
                f"known: {', '.join(features.kind_names) or '(this catalog has no kinds)'}"
            )
    if spec.mmr is not None and spec.mmr.by == "embedding" and features.vectors is None:
        raise ConfigError("rerank.mmr.by=embedding: these items have no vectors; use by=genres or auto")


def _pool(
    scores: np.ndarray,
    items: np.ndarray,
    history: np.ndarray,
    features: ItemFeatures,
    spec: RerankSpec,
    k: int,
) -> np.ndarray:
    """Positions (into `items`) of the model's top max(pool, k) in score order (ties: lower item
    first), plus the best few items outside that top of what the list may need: n of each kind a
    quota asks for, k without any genre the top would fill past max_per_genre, and round(k·p_c)
    of each category c of the history's mix p that calibration matches (a pool of nothing but
    drama cannot be calibrated to 30 % comedy)."""
    size = max(spec.pool, k)
    pos = _best(scores, np.arange(len(scores)), size)
    if len(scores) <= size:
        return pos[np.lexsort((items[pos], -scores[pos]))]
    wanted: list[tuple[np.ndarray, int]] = []  # (catalog items of a category, how many)
    q = spec.quota
    if q is not None:
        for name, n in q.min_per_kind.items():
            if n > 0 and name in features.kind_names:
                wanted.append((np.flatnonzero(features.kinds == features.kind_names.index(name)), n))
    if q is not None and q.max_per_genre is not None:
        # genres the top alone could fill past the cap: the best k items carrying none of them
        top_counts = np.asarray(features.genre_bin[items[pos]].sum(axis=0)).ravel()
        full = (top_counts >= q.max_per_genre).astype(np.float64)
        if full.any():
            free = (features.genre_bin @ full) == 0  # (n,) catalog items with no full genre
            wanted.append((np.flatnonzero(free), k))
    cal = spec.calibrate
    if cal is not None and cal.lam > 0:
        p = features.history_mix(history, cal.by)
        members = features.members(cal.by)
        for c in np.flatnonzero(np.round(k * p) >= 1):
            of_c = members.indices[members.indptr[c] : members.indptr[c + 1]]
            wanted.append((of_c, int(np.round(k * p[c]))))
    if wanted:
        where = np.full(features.n, -1, dtype=np.int64)  # catalog item -> position, outside the top
        where[items] = np.arange(len(items))
        where[items[pos]] = -1
        extra = [_best(scores, w[w >= 0], n) for of_c, n in wanted for w in (where[of_c],)]
        pos = np.unique(np.concatenate([pos, *extra]))
    return pos[np.lexsort((items[pos], -scores[pos]))]


def _best(scores: np.ndarray, pos: np.ndarray, n: int) -> np.ndarray:
    """The `n` positions among `pos` with the highest scores (unordered)."""
    if len(pos) <= n:
        return pos
    return pos[np.argpartition(-scores[pos], n - 1)[:n]]


def _relevance(
    s: np.ndarray, cand: np.ndarray, features: ItemFeatures, spec: RerankSpec, lse: float
) -> np.ndarray:
    """Each candidate's relevance (`s` is sorted best first): the DCG weight 1/log2(1 + rank) of
    its place in the model's order, or its softmax probability exp(s − lse) over every
    candidate; less the novelty penalty.

    Why ranks by default: they mean the same for any model's scores. A min-max of the scores gave
    a worse trade-off on ML-1M SASRec at every λ, and so did probabilities divided by each user's
    top one (a per-user scale); the plain probability gave a better one (docs/rerank.md)."""
    if spec.relevance == "prob":
        rel = np.exp(s - lse)
    else:
        rel = 1.0 / np.log2(np.arange(len(s), dtype=np.float64) + 2.0)
    if spec.novelty is not None and spec.novelty.weight > 0:
        top = np.log1p(float(features.popularity.max(initial=0.0)))
        if top > 0:
            scale = float(rel[0]) if len(rel) else 1.0
            rel = rel - spec.novelty.weight * scale * np.log1p(features.popularity[cand]) / top
    return rel


def _logsumexp(scores: np.ndarray) -> float:
    """log Σ exp(scores), the softmax's normaliser over every candidate (not only the pool)."""
    top = float(scores.max(initial=-np.inf))
    if not np.isfinite(top):
        return 0.0
    return top + float(np.log(np.exp(scores - top).sum()))


def _greedy(
    rel: np.ndarray,
    cand: np.ndarray,
    history: np.ndarray,
    features: ItemFeatures,
    spec: RerankSpec,
    k: int,
) -> tuple[np.ndarray, str | None]:
    """Positions into `cand` of the k picks, in pick order; and the MMR similarity used."""
    n = len(cand)
    cal = _Calibration.start(cand, history, features, spec, k)
    similarity: str | None = None
    sim: Callable[[int], np.ndarray] | None = None
    mmr = spec.mmr
    lam_m = mmr.lam if mmr is not None else 0.0
    if mmr is not None and lam_m > 0:
        sim, similarity = _similarity(cand, features, mmr.by)
    maxsim = np.zeros(n)  # before the first pick nothing is similar
    quota = _Quota.start(cand, features, spec)
    chosen = np.zeros(n, dtype=bool)
    picks: list[int] = []
    dcg = spec.slots == "dcg"
    for t in range(k):
        r = rel / np.log2(2.0 + t) if dcg else rel
        gain = cal.gain(r) if cal is not None else r
        if sim is not None:
            gain = (1 - lam_m) * gain - lam_m * maxsim
        allowed = quota.allowed(~chosen, k - t) if quota is not None else ~chosen
        masked = np.where(allowed, gain, -np.inf)
        i = int(np.argmax(masked))  # the first best: ties keep the model's order
        if not allowed[i]:
            break
        chosen[i] = True
        picks.append(i)
        if cal is not None:
            cal.add(i)
        if sim is not None:
            maxsim = sim(i) if t == 0 else np.maximum(maxsim, sim(i))
        if quota is not None:
            quota.add(i)
    return np.asarray(picks, dtype=np.int64), similarity


class _Calibration:
    """The list's category mass over the support of p, and each candidate's KL if added."""

    def __init__(
        self,
        ps: np.ndarray,
        sh: np.ndarray,
        mass: np.ndarray,
        lam: float,
        alpha: float,
        open_slots: int,
        per_item: float,
    ) -> None:
        self.ps, self.sh, self.mass, self.lam, self.alpha = ps, sh, mass, lam, alpha
        self.num = np.zeros(sh.shape[1])  # Σ shares of the listed items, on p's support
        self.den = 0.0  # how many listed items have a category
        self.entropy = float((ps * np.log(ps)).sum())
        self.open = open_slots  # lookahead: slots after the next pick (else 0)
        self.per_item = per_item  # categories an item of the pool carries, on average
        self.by_share = np.argsort(-ps, kind="stable")  # p's categories, largest share first

    @classmethod
    def start(
        cls,
        cand: np.ndarray,
        history: np.ndarray,
        features: ItemFeatures,
        spec: RerankSpec,
        k: int,
    ) -> _Calibration | None:
        c = spec.calibrate
        if c is None or c.lam <= 0:
            return None
        p = features.history_mix(history, c.by)
        support = np.flatnonzero(p > 0)
        if not len(support):  # a history without categories: nothing to calibrate to
            return None
        sh = features.block(c.by, cand, support)  # (P, S)
        mass = features.mass(c.by)[cand]  # (P,) 1 for an item with categories, else 0
        counts = features.n_categories(c.by)[cand]
        per_item = float(counts[mass > 0].mean()) if (mass > 0).any() else 1.0
        return cls(p[support], sh, mass, c.lam, c.alpha, k - 1 if c.lookahead else 0, per_item)

    def completion(self) -> np.ndarray:
        """(S,) the mix the open slots are assumed to add: p on its largest categories, as many
        as the open slots can carry (open × categories per item), renormalised — all of p for a
        film's handful of genres, the head of a listener's long tag mix."""
        cap = int(np.ceil(self.open * self.per_item))
        if cap >= len(self.ps):
            return self.ps
        out = np.zeros_like(self.ps)
        top = self.by_share[:cap]
        out[top] = self.ps[top]
        return out / out.sum()

    def gain(self, rel: np.ndarray) -> np.ndarray:
        """(1 − λ)·r_i − λ·KL(p ‖ q̃(S ∪ {i} ∪ the open slots' completion)) for every candidate
        i: Steck's objective (1 − λ)·Σ_S r − λ·KL(p ‖ q̃(S)) less the terms common to every candidate."""
        tot = self.den + self.mass + self.open  # (P,)
        rest = self.completion() if self.open else self.ps
        num = self.num[None, :] + self.sh + self.open * rest[None, :]  # (P, S)
        q = np.divide(num, tot[:, None], out=np.zeros_like(self.sh), where=tot[:, None] > 0)  # (P, S)
        qt = (1 - self.alpha) * q + self.alpha * self.ps[None, :]
        kl = self.entropy - (np.log(qt) * self.ps[None, :]).sum(1)
        return (1 - self.lam) * rel - self.lam * kl

    def add(self, i: int) -> None:
        self.num += self.sh[i]
        self.den += float(self.mass[i])
        self.open = max(0, self.open - 1)


class _Quota:
    """Which candidates a step may take: min_per_kind first, then max_per_genre, then a full list."""

    def __init__(self, kinds: np.ndarray, want: dict[int, int], cap: int | None, gbin: np.ndarray) -> None:
        self.kinds, self.want, self.cap, self.gbin = kinds, want, cap, gbin
        self.have = dict.fromkeys(want, 0)
        self.counts = np.zeros(gbin.shape[1], dtype=np.int64)

    @classmethod
    def start(cls, cand: np.ndarray, features: ItemFeatures, spec: RerankSpec) -> _Quota | None:
        q = spec.quota
        if q is None:
            return None
        names = features.kind_names
        want = {names.index(k): m for k, m in q.min_per_kind.items() if m > 0 and k in names}
        gb = features.genre_bin[cand]
        gbin = gb[:, np.unique(gb.indices)].toarray() > 0  # (P, G'): the genres in the pool
        return cls(features.kinds[cand], want, q.max_per_genre, gbin)

    def allowed(self, avail: np.ndarray, slots: int) -> np.ndarray:
        allowed = avail
        if self.cap is not None:
            ok = avail & ~(self.gbin & (self.counts >= self.cap)[None, :]).any(1)
            allowed = ok if ok.any() else avail  # cannot fill the list otherwise: relaxed
        short = {kid: m - self.have[kid] for kid, m in self.want.items() if self.have[kid] < m}
        short = {kid: d for kid, d in short.items() if (avail & (self.kinds == kid)).any()}
        if short and sum(short.values()) >= slots:  # every remaining slot is needed by a quota
            need = avail & np.isin(self.kinds, list(short))
            need_ok = need & allowed
            allowed = need_ok if need_ok.any() else need  # min_per_kind wins over max_per_genre
        return allowed

    def add(self, i: int) -> None:
        self.counts += self.gbin[i]
        kid = int(self.kinds[i])
        if kid in self.have:
            self.have[kid] += 1


def _similarity(cand: np.ndarray, features: ItemFeatures, by: str) -> tuple[Callable[[int], np.ndarray], str]:
    """sim(·, i): every candidate's similarity to candidate i — cosine of vectors or Jaccard of
    genre sets. Only the k picked columns are ever needed, so no (P, P) matrix is built (a
    matrix product small enough to wake BLAS threads costs more than the whole greedy)."""
    if by in ("auto", "embedding") and features.vectors is not None:
        v = np.ascontiguousarray(features.vectors[cand], dtype=np.float64)  # (P, D), unit rows
        return (lambda i: v @ v[i]), "embedding"
    gb = features.genre_bin[cand]
    b = gb[:, np.unique(gb.indices)].toarray()  # (P, G') 0/1, the pool's genres only
    size = b.sum(1)

    def jaccard(i: int) -> np.ndarray:
        inter = b @ b[i]
        union = size + size[i] - inter
        return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)

    return jaccard, "genres"


def _relaxed(out: np.ndarray, features: ItemFeatures, spec: RerankSpec) -> list[Relaxed]:
    """The quotas the final list misses, read off the list itself."""
    q = spec.quota
    if q is None:
        return []
    found: list[Relaxed] = []
    kinds = features.kinds[out]
    for name, m in q.min_per_kind.items():
        got = int((kinds == features.kind_names.index(name)).sum()) if name in features.kind_names else 0
        if got < m:
            found.append(Relaxed("min_per_kind", name, m, got))
    if q.max_per_genre is not None and len(out):
        per = np.asarray(features.genre_bin[out].sum(axis=0)).ravel()
        for g in np.flatnonzero(per > q.max_per_genre):
            found.append(Relaxed("max_per_genre", features.genre_names[int(g)], q.max_per_genre, int(per[g])))
    return found


# ---- many users at once: batch output and offline evaluation -----------------------------------------
def rerank_rows(
    scores: np.ndarray | torch.Tensor,
    histories: Histories,
    features: ItemFeatures,
    spec: RerankSpec,
    k: int,
) -> np.ndarray:
    """(B, k) re-ranked catalog indices for a (B, N) score matrix whose excluded items are -inf
    (padded with -1 where a row has fewer than k candidates)."""
    s = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    out = np.full((len(s), k), -1, dtype=np.int64)
    for r in range(len(s)):
        row = s[r]
        ok = np.flatnonzero(np.isfinite(row))
        got = rerank(row[ok], ok, histories[r], features, spec, k).items
        out[r, : len(got)] = got
    return out


def list_reranker(
    features: ItemFeatures, spec: RerankSpec, k: int
) -> Callable[[torch.Tensor, Histories], torch.Tensor]:
    """A score transform for full-ranking evaluation: each row's re-ranked top-k is moved above
    every other item in its new order; the rest keep the model's scores and order."""

    def apply(scores: torch.Tensor, histories: Histories) -> torch.Tensor:
        lists = rerank_rows(scores, histories, features, spec, k)  # (B, k)
        out = scores.clone()
        finite = torch.where(torch.isfinite(out), out, torch.full_like(out, -torch.inf))
        top = finite.max(dim=1).values.clamp(min=0.0) + 1.0  # (B,)
        for r in range(len(lists)):
            row = lists[r][lists[r] >= 0]
            if len(row):
                out[r, torch.from_numpy(row)] = top[r] + torch.arange(len(row), 0, -1, dtype=out.dtype)
        return out

    return apply
