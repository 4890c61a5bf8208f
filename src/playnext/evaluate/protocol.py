"""The standard protocol: fit on train, choose on validation, report test — full ranking.

`evaluate` batches users, asks the model for dense scores, masks already-seen items and
ranks every target against the whole catalog. `run_experiment` wraps the model choice so a
test number is never used to pick anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from playnext.data.interactions import Interactions
from playnext.data.split import EvalSet, Split
from playnext.evaluate.metrics import Ties, mask_excluded, rank_targets, topk_items, user_metrics

DEFAULT_KS: tuple[int, ...] = (10, 50)
Scorer = Callable[[np.ndarray, Any], torch.Tensor]
Progress = Callable[[int], None]


@dataclass
class EvalResult:
    metrics: dict[str, float]
    n_users: int
    seconds: float
    per_user: dict[str, np.ndarray] = field(default_factory=dict)


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
    """
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
        if sampled_negatives:
            scores = _keep_sampled(scores, batch, sampled_negatives, rng)
        ranks = rank_targets(scores, batch.targets)
        um = user_metrics(ranks, len(batch), batch.targets.lengths, ks, ties, n_items)
        for key, vals in um.items():
            sums[key] = sums.get(key, 0.0) + float(vals.sum())
            if keep_per_user:
                per_user.setdefault(key, []).append(vals)
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
        if progress is not None:
            progress(len(batch))
    if world > 1:
        sums, nov_sum, pop_sum = _all_reduce_sums(sums, nov_sum, pop_sum, recommended)
    prefix = f"sampled{sampled_negatives}/" if sampled_negatives else ""
    metrics = {prefix + k: v / max(n, 1) for k, v in sums.items()}
    if not sampled_negatives:
        k0 = min(ks)
        metrics[f"Coverage@{k0}"] = float(recommended.sum()) / max(1, n_items)
        if item_counts is not None:
            metrics[f"Novelty@{k0}"] = nov_sum / max(n, 1)
            metrics[f"ARP@{k0}"] = pop_sum / max(n, 1)
    return EvalResult(
        metrics=metrics,
        n_users=n,
        seconds=time.perf_counter() - start,
        per_user={k: np.concatenate(v) for k, v in per_user.items()},
    )


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


@dataclass
class ExperimentResult:
    model: Any
    params: dict[str, Any]
    valid_metrics: dict[str, float]
    test: EvalResult
    candidates: list[dict[str, Any]]
    train_seconds: float
    refit_params: dict[str, Any] | None = None  # set when the tested model was refit on train + valid
    chosen: Any = None  # the model validation chose: `model` itself unless it was refit


def select_and_test(
    model_name: str,
    split: Split,
    *,
    grid: Sequence[dict[str, Any]] | None = None,
    fixed: dict[str, Any] | None = None,
    select_metric: str = "NDCG@10",
    ties: Ties = "expected",
    exclude_seen: bool = True,
    on_candidate: Callable[[dict[str, Any], dict[str, float]], None] | None = None,
    distributed: bool = False,
    refit: bool = False,
) -> ExperimentResult:
    """Fit every candidate config on train, pick the best on validation, evaluate it on test.

    `refit=True` then trains the chosen config once more on train + the validation events
    (`Split.train_and_valid`), a neural model for the epochs validation chose with its schedule
    spread over them, and tests that model; validation still chooses everything.
    `distributed=True` runs inside a torch.distributed group: neural models train data-parallel
    (they read the group themselves) and validation / test are split across ranks and reduced.
    """
    from playnext.models.registry import get

    cls = get(model_name)
    candidates = list(grid) if grid is not None else cls.search_space()
    fixed = fixed or {}
    best: tuple[float, Any, dict[str, Any], dict[str, float]] | None = None
    tried: list[dict[str, Any]] = []
    train_seconds = 0.0

    def judge(model: Any, questions: EvalSet) -> EvalResult:
        return judge_on(
            model, split, questions, ties=ties, exclude_seen=exclude_seen, distributed=distributed
        )

    for cand in candidates:
        params = {**cand, **fixed}
        model = cls(cls.config_class.from_dict(params))
        t0 = time.perf_counter()
        model.fit(split.train, split.valid)
        train_seconds += time.perf_counter() - t0
        v = judge(model, split.valid).metrics
        tried.append({"params": params, "valid": v})
        if on_candidate is not None:
            on_candidate(params, v)
        if best is None or v[select_metric] > best[0]:
            best = (v[select_metric], model, params, v)
        if fixed and len(candidates) == 1:
            break
    assert best is not None
    _, model, params, vmetrics = best
    chosen, refit_params = model, None
    if refit:
        model, refit_params, seconds = refit_on_train_and_valid(
            model_name, split, params, chosen_epochs(model)
        )
        train_seconds += seconds
    test = judge(model, split.test)
    return ExperimentResult(model, params, vmetrics, test, tried, train_seconds, refit_params, chosen)


def judge_on(
    model: Any, split: Split, questions: EvalSet, *, ties: Ties, exclude_seen: bool, distributed: bool = False
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
    )


def chosen_epochs(model: Any) -> int | None:
    """The epochs validation chose for a trained neural model (its best; all if it never
    validated); None for a model without epochs."""
    from playnext.models.nn import NeuralRecommender

    if not isinstance(model, NeuralRecommender) or model.report_ is None:
        return None
    report = model.report_
    return report.best_epoch if report.best_epoch > 0 else report.epochs


def refit_on_train_and_valid(
    model_name: str, split: Split, params: dict[str, Any], epochs: int | None
) -> tuple[Any, dict[str, Any], float]:
    """The chosen config trained again on train + validation events: (model, its config, seconds)."""
    from playnext.models.registry import get

    cls = get(model_name)
    refit_params = refit_config(params, epochs)
    t0 = time.perf_counter()
    model = cls(cls.config_class.from_dict(refit_params)).fit(split.train_and_valid())
    return model, refit_params, time.perf_counter() - t0


def refit_config(params: dict[str, Any], epochs: int | None) -> dict[str, Any]:
    """The chosen config for a refit without validation: a neural model trains for the epochs
    validation picked (no early stopping, no time budget, so the schedule ends with them) and
    keeps its checkpoints apart from the selection run's."""
    if epochs is None:
        return dict(params)
    out = {**params, "epochs": epochs, "patience": 0, "max_minutes": 0.0}
    if params.get("checkpoint_dir"):
        out["checkpoint_dir"] = str(Path(params["checkpoint_dir"]) / "refit")
    return out


def protocol_description(split: Split, ties: Ties, exclude_seen: bool, refit: bool = False) -> dict[str, Any]:
    out = {
        **split.protocol,
        "ranking": "full (all items)",
        "exclude_seen": exclude_seen,
        "ties": ties,
        "selection": "best validation NDCG@10; test evaluated once",
    }
    if refit:
        out["refit"] = "the chosen config retrained on train + validation events before test"
        if "test_history" in out:
            out["test_history"] = "train + validation item (the model was refit on it)"
    return out


def dataset_fingerprint(data: Interactions) -> dict[str, int]:
    return {"users": data.n_users, "items": data.n_items, "interactions": len(data)}
