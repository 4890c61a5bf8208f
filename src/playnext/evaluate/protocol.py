"""The standard protocol: fit on train, choose on validation, report test — full ranking.

`evaluate` batches users, asks the model for dense scores, masks already-seen items and
ranks every target against the whole catalog. Choosing a model on validation and testing it
once is the application's job (`playnext.experiment`); nothing here knows a model class.

The repeat-aware protocol (`repeats=True`, `playnext train --repeats`) masks nothing, since
re-listening to a seen item is a right answer, and reports every accuracy metric three times:
over all users, over users whose target is a *repeat* (already in their history, ``repeat/``
keys) and over users whose target is *new* (``new/`` keys), with the size of each group.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from playnext.data.interactions import Histories, Interactions
from playnext.data.split import EvalSet, Split
from playnext.evaluate import beyond
from playnext.evaluate.metrics import (
    Ties,
    mask_excluded,
    rank_targets,
    repeat_targets,
    topk_items,
    user_metrics,
)
from playnext.rerank import ItemFeatures

DEFAULT_KS: tuple[int, ...] = (10, 50)
Scorer = Callable[[np.ndarray, Any], torch.Tensor]
Progress = Callable[[int], None]
ListTransform = Callable[[torch.Tensor, Histories], torch.Tensor]
"""(masked scores (B, N), histories) → scores whose top-k is the re-ranked list (`list_reranker`)."""
COUNT = "#"  # a sums key "#M" holds how many users metric M is defined for (else: all users)
GROUPS: tuple[str, ...] = ("repeat", "new")
"""The repeat-aware protocol's target groups: every target already seen, or none of them."""


@dataclass
class EvalResult:
    metrics: dict[str, float]
    n_users: int
    seconds: float
    per_user: dict[str, np.ndarray] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)  # repeat-aware protocol: users per group


def evaluate(
    scorer: Scorer,
    data: EvalSet,
    n_items: int,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    ties: Ties = "expected",
    exclude_seen: bool = True,
    item_counts: np.ndarray | None = None,
    sampled_negatives: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    keep_per_user: bool = False,
    progress: Progress | None = None,
    distributed: bool = False,
    rerank: ListTransform | None = None,
    features: ItemFeatures | None = None,
    repeats: bool = False,
) -> EvalResult:
    """Metrics averaged over users with at least one target.

    `item_counts` (training popularity) enables novelty and average-recommended-popularity.
    `sampled_negatives=N` ranks each target only against N random unseen items instead of the
    whole catalog; those metrics are prefixed ``sampled{N}/`` so they can never be mistaken for
    full-ranking numbers.

    `distributed=True` (inside an initialised torch.distributed group, every rank calling with
    the same arguments and an equal model): rank r scores users r, r + W, r + 2W, … and the
    metric *sums*, the user count and the coverage set are all-reduced before dividing, so every
    rank returns the single-process metrics (up to float summation order), never an average of
    per-rank averages. `per_user` then holds this rank's users only.

    `rerank` re-orders each row's masked scores before ranking (a re-ranked top-k above the
    model's order), so every metric measures the lists a user would see. `features` adds the
    beyond-accuracy metrics of the top-K lists (K the smallest of `ks`): ILD-genre@K,
    ILD-embedding@K (when there are item vectors) and Miscalibration@K (evaluate/beyond.py).

    `repeats=True` is the repeat-aware protocol: seen items stay candidates (whatever
    `exclude_seen` says) and each per-user metric M is also averaged over the users whose
    targets are all in their history (``repeat/M``) and those with none there (``new/M``); a
    user with both kinds (several targets) counts in the overall numbers only. `groups` holds
    each group's size; a group with no user has no keys.
    """
    if repeats:
        exclude_seen = False
    if rerank is not None and sampled_negatives:
        raise ValueError(
            "a re-ranked list is a full-ranking answer: sampled_negatives cannot be used with it"
        )
    start = time.perf_counter()
    if not exclude_seen:
        data = data.without_exclusion()
    keep = np.flatnonzero(data.targets.lengths > 0)
    data = data.take(keep)
    n = len(data)
    if n == 0:
        raise ValueError("nothing to evaluate: no user has a held-out target")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if world > 1:
        data = data.take(np.arange(rank, n, world))  # this rank's strided shard; n stays global
    if batch_size is None:
        batch_size = max(16, min(4096, (1 << 26) // max(1, n_items)))  # ~256 MB of float32 scores
    sums: dict[str, float] = {}
    per_user: dict[str, list[np.ndarray]] = {}
    recommended = np.zeros(n_items, dtype=bool)
    k_cov = min(ks)  # coverage/novelty are reported at the smallest K
    nov_sum = 0.0
    pop_sum = 0.0
    rng = np.random.default_rng(seed if world == 1 else [seed, rank])
    if item_counts is not None:
        p = np.maximum(item_counts, 1) / max(float(item_counts.sum()), 1.0)
        self_info = torch.from_numpy(-np.log2(p))
        pop = torch.from_numpy(item_counts.astype(np.float64))
    for s in range(0, len(data), batch_size):
        batch = data.take(np.arange(s, min(len(data), s + batch_size)))
        scores = scorer(batch.users, batch.history).float().clone()
        if scores.shape != (len(batch), n_items):
            raise ValueError(f"scorer returned shape {tuple(scores.shape)}, expected {(len(batch), n_items)}")
        mask_excluded(scores, batch.exclude)
        if rerank is not None:
            scores = rerank(scores, batch.history)
        if sampled_negatives:
            scores = _keep_sampled(scores, batch, sampled_negatives, rng)
        ranks = rank_targets(scores, batch.targets)
        um = user_metrics(ranks, len(batch), batch.targets.lengths, ks, ties, n_items)
        for key, vals in um.items():
            sums[key] = sums.get(key, 0.0) + float(vals.sum())
            if keep_per_user:
                per_user.setdefault(key, []).append(vals)
        if repeats:
            _by_group(sums, um, batch, n_items)
        if not sampled_negatives:
            top = topk_items(scores, k_cov)  # (B, K)
            tk = top[:, : min(ks)]
            # excluded (-inf) items fill the list only when a user has < k candidates;
            # they are not recommendations and must not count towards coverage or novelty
            shown = torch.gather(scores, 1, tk) > float("-inf")
            recommended[tk[shown].numpy()] = True
            if item_counts is not None:
                w = shown.double() / shown.sum(1, keepdim=True).clamp(min=1)
                nov_sum += float((self_info[tk] * w).sum())
                pop_sum += float((pop[tk] * w).sum())
            if features is not None:
                lists = torch.where(shown, tk, torch.full_like(tk, -1)).numpy()
                _beyond(sums, lists, batch.history, features, k_cov)
        if progress is not None:
            progress(len(batch))
    if world > 1:
        sums, nov_sum, pop_sum = _all_reduce_sums(sums, nov_sum, pop_sum, recommended)
    prefix = f"sampled{sampled_negatives}/" if sampled_negatives else ""
    metrics = {  # a metric defined for no user (no history has genres) is left out, not 0
        prefix + k: v / max(sums.get(COUNT + k, n), 1)
        for k, v in sums.items()
        if not k.startswith(COUNT) and sums.get(COUNT + k, n) > 0
    }
    if not sampled_negatives:
        k0 = min(ks)
        metrics[f"Coverage@{k0}"] = float(recommended.sum()) / max(1, n_items)
        if item_counts is not None:
            metrics[f"Novelty@{k0}"] = nov_sum / max(n, 1)
            metrics[f"ARP@{k0}"] = pop_sum / max(n, 1)
    groups = {g: int(sums.get(f"{COUNT}{g}/", 0.0)) for g in GROUPS} if repeats else {}
    return EvalResult(
        metrics=metrics,
        n_users=n,
        seconds=time.perf_counter() - start,
        per_user={k: np.concatenate(v) for k, v in per_user.items()},
        groups=groups,
    )


def _by_group(sums: dict[str, float], um: dict[str, np.ndarray], batch: EvalSet, n_items: int) -> None:
    """Add the batch's per-user metrics to the sums of their target group, and count the group
    (under "#repeat/" and "#new/", kept out of the metrics by the COUNT prefix)."""
    hit = repeat_targets(batch.history, batch.targets, n_items)  # (M,)
    seen = np.bincount(batch.targets.row_ids(), weights=hit, minlength=len(batch))  # (B,)
    members = {"repeat": seen == batch.targets.lengths, "new": seen == 0}
    for group, rows in members.items():
        size = float(rows.sum())
        sums[f"{COUNT}{group}/"] = sums.get(f"{COUNT}{group}/", 0.0) + size
        for key, vals in um.items():
            name = f"{group}/{key}"
            sums[name] = sums.get(name, 0.0) + float(vals[rows].sum())
            sums[COUNT + name] = sums.get(COUNT + name, 0.0) + size


def _beyond(
    sums: dict[str, float], lists: np.ndarray, history: Histories, features: ItemFeatures, k: int
) -> None:
    """Add the batch's beyond-accuracy sums (and the users each is defined for) to `sums`."""
    parts = {
        f"ILD-genre@{k}": beyond.genre_diversity(lists, features),
        f"Miscalibration@{k}": beyond.miscalibration(lists, history, features),
    }
    if features.vectors is not None:
        parts[f"ILD-embedding@{k}"] = beyond.embedding_diversity(lists, features.vectors)
    for key, values in parts.items():
        ok = ~np.isnan(values)
        sums[key] = sums.get(key, 0.0) + float(values[ok].sum())
        sums[COUNT + key] = sums.get(COUNT + key, 0.0) + float(ok.sum())


def _all_reduce_sums(
    sums: dict[str, float], nov_sum: float, pop_sum: float, recommended: np.ndarray
) -> tuple[dict[str, float], float, float]:
    """Global metric sums (float64 SUM) and coverage set (MAX, in place) over all ranks.

    A rank whose shard is empty has no metric keys yet, so the key list is taken from the
    ranks that have one (a gather of a few strings, once per evaluation).
    """
    names: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(names, sorted(sums))
    keys = max((k for k in names if k), key=len, default=[])
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    packed = torch.tensor([sums.get(k, 0.0) for k in keys] + [nov_sum, pop_sum], dtype=torch.float64)
    packed = packed.to(device) if device is not None else packed
    dist.all_reduce(packed)
    seen = torch.from_numpy(recommended.astype(np.int32))
    seen = seen.to(device) if device is not None else seen
    dist.all_reduce(seen, op=dist.ReduceOp.MAX)
    recommended[:] = seen.cpu().numpy() > 0
    values = packed.cpu().tolist()
    return dict(zip(keys, values[:-2], strict=True)), values[-2], values[-1]


def _keep_sampled(scores: torch.Tensor, batch: EvalSet, n_neg: int, rng: np.random.Generator) -> torch.Tensor:
    """Keep targets plus `n_neg` uniformly sampled non-excluded, non-target items per row."""
    out = torch.full_like(scores, float("-inf"))
    n_items = scores.shape[1]
    for r in range(len(batch)):
        allowed = torch.isfinite(scores[r]).numpy().copy()
        tg = batch.targets[r]
        allowed[tg] = False
        cand = np.flatnonzero(allowed)
        pick = rng.choice(cand, size=min(n_neg, len(cand)), replace=False) if len(cand) else cand
        keep = np.concatenate([pick, tg]).astype(np.int64)
        out[r, keep] = scores[r, keep]
    del n_items
    return out


def model_scorer(model: Any) -> Scorer:
    return lambda users, hist: model.score(users, hist)


def per_user(table: torch.Tensor, users: np.ndarray) -> Callable[[np.ndarray], torch.Tensor]:
    """asked users → their rows of `table`, whose row r belongs to `users[r]` (one row a user)."""
    row_of = {int(u): r for r, u in enumerate(users)}
    return lambda asked: table[torch.as_tensor([row_of[int(u)] for u in asked], dtype=torch.long)]


def cached(scorer: Scorer, questions: EvalSet) -> Scorer:
    """`scorer` run once over `questions` (one question a user), then read back by user: for
    sweeps that evaluate many transforms of the same scores."""
    rows = per_user(scorer(questions.users, questions.history), questions.users)
    return lambda users, history: rows(users)


def judge_on(
    model: Any,
    split: Split,
    questions: EvalSet,
    *,
    ties: Ties,
    exclude_seen: bool,
    distributed: bool = False,
    rerank: ListTransform | None = None,
    features: ItemFeatures | None = None,
    repeats: bool = False,
) -> EvalResult:
    """Validation and test are scored by exactly the same settings (popularity-based metrics
    count the training events, refit or not)."""
    return evaluate(
        model_scorer(model),
        questions,
        split.train.n_items,
        ties=ties,
        exclude_seen=exclude_seen,
        item_counts=split.train.item_counts(),
        distributed=distributed,
        rerank=rerank,
        features=features,
        repeats=repeats,
    )


def protocol_description(
    split: Split, ties: Ties, exclude_seen: bool, refit: bool = False, repeats: bool = False
) -> dict[str, Any]:
    out = {
        **split.protocol,
        "ranking": "full (all items)",
        "exclude_seen": exclude_seen and not repeats,
        "ties": ties,
        "selection": "best validation NDCG@10; test evaluated once",
    }
    if repeats:
        out["repeats"] = (
            "seen items are candidates; metrics also over repeat targets (already in the history, "
            "repeat/ keys) and new targets (new/ keys)"
        )
    if refit:
        out["refit"] = "the chosen config retrained on train + validation events before test"
        if "test_history" in out:
            out["test_history"] = "train + validation item (the model was refit on it)"
    return out


def dataset_fingerprint(data: Interactions) -> dict[str, int]:
    return {"users": data.n_users, "items": data.n_items, "interactions": len(data)}
