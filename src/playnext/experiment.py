"""The application layer: choose on validation, refit if asked, test once, build the run record.

`playnext train`, each of its torch.distributed ranks, the demo and every benchmark run through
`run` (or its parts `select_and_test` and `record`), so there is one definition of how a number
in a results file was obtained. Evaluation itself (`playnext.evaluate`) knows nothing of models:
this layer is where a model, a split and the metrics meet.
"""

from __future__ import annotations

import functools
import os
import platform
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from playnext.data.interactions import Interactions
from playnext.data.split import ColdSplit, EvalSet, Split, cold_item_split, leave_one_out, parse_cold
from playnext.errors import ConfigError
from playnext.evaluate.cold import (
    borrowing,
    choose_live_weight,
    cold_popularity,
    evaluate_cold,
    id_only,
    with_live_counts,
)
from playnext.evaluate.metrics import TIES, Ties
from playnext.evaluate.protocol import EvalResult, Scorer, judge_on, protocol_description
from playnext.models import registry
from playnext.models.nn import NeuralRecommender
from playnext.ranking import cold_neighbours, item_texts
from playnext.recipes import Recipe
from playnext.rerank import ItemFeatures, RerankSpec, list_reranker
from playnext.text import make_encoder
from playnext.version import __version__

OnCandidate = Callable[[dict[str, Any], dict[str, float]], None]


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
    test_without_rerank: EvalResult | None = None  # the model's own lists, when `test` is re-ranked


def select_and_test(
    model_name: str,
    split: Split,
    *,
    grid: Sequence[dict[str, Any]] | None = None,
    fixed: dict[str, Any] | None = None,
    select_metric: str = "NDCG@10",
    ties: Ties = "expected",
    exclude_seen: bool = True,
    on_candidate: OnCandidate | None = None,
    distributed: bool = False,
    refit: bool = False,
    rerank: RerankSpec | None = None,
    repeats: bool = False,
) -> ExperimentResult:
    """Fit every candidate config on train, pick the best on validation, evaluate it on test.

    `grid=None` takes the model's own `search_space()`; each candidate is `{**candidate, **fixed}`.
    `refit=True` then trains the chosen config once more on train + the validation events
    (`Split.train_and_valid`), a neural model for the epochs validation chose, and tests that
    model; validation still chooses everything. `distributed=True` runs inside a
    torch.distributed group: neural models train data-parallel (they read the group
    themselves) and validation / test are split across ranks and reduced.

    `rerank` re-ranks the chosen model's test lists (`playnext.rerank`): validation still
    chooses on the model's own lists, and test is reported both ways, with the beyond-accuracy
    metrics, so the re-ranker's cost in accuracy is read off one run.

    `repeats=True` is the repeat-aware protocol (`evaluate`): seen items are candidates in
    validation and test, and test also reports repeat and new targets apart.
    """
    if repeats:
        split, exclude_seen = split.unmasked(), False
    cls = registry.get(model_name)
    candidates = list(grid) if grid is not None else cls.search_space()
    fixed = fixed or {}
    best: tuple[float, Any, dict[str, Any], dict[str, float]] | None = None
    tried: list[dict[str, Any]] = []
    train_seconds = 0.0

    def judge(model: Any, questions: EvalSet) -> EvalResult:
        return judge_on(
            model,
            split,
            questions,
            ties=ties,
            exclude_seen=exclude_seen,
            distributed=distributed,
            repeats=repeats,
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
    assert best is not None
    _, model, params, vmetrics = best
    chosen, refit_params = model, None
    if refit:
        model, refit_params, seconds = refit_on_train_and_valid(
            model_name, split, params, chosen_epochs(model)
        )
        train_seconds += seconds
    if rerank is None or not rerank.active:
        test = judge(model, split.test)
        return ExperimentResult(model, params, vmetrics, test, tried, train_seconds, refit_params, chosen)
    features = item_features(model, split.train)
    on_test = functools.partial(
        judge_on,
        ties=ties,
        exclude_seen=exclude_seen,
        distributed=distributed,
        features=features,
        repeats=repeats,
    )
    plain = on_test(model, split, split.test)
    test = on_test(model, split, split.test, rerank=list_reranker(features, rerank, RERANK_K))
    return ExperimentResult(model, params, vmetrics, test, tried, train_seconds, refit_params, chosen, plain)


RERANK_K = 10
"""The list length a re-ranker builds in offline evaluation (the K of NDCG@10)."""


def item_features(model: Any, data: Interactions) -> ItemFeatures:
    """What re-rankers know of `data`'s items: genres and kinds, training popularity and the
    model's item vectors (if it has them)."""
    vectors = model.item_embeddings()
    return ItemFeatures.from_meta(data.meta, data.item_counts(), vectors)


def chosen_epochs(model: Any) -> int | None:
    """The epochs validation chose for a trained neural model (its best; all if it never
    validated); None for a model without epochs."""
    if not isinstance(model, NeuralRecommender) or model.report_ is None:
        return None
    report = model.report_
    return report.best_epoch if report.best_epoch > 0 else report.epochs


def refit_on_train_and_valid(
    model_name: str, split: Split, params: dict[str, Any], epochs: int | None
) -> tuple[Any, dict[str, Any], float]:
    """The chosen config trained again on train + validation events: (model, its config, seconds)."""
    cls = registry.get(model_name)
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


# ---- a run: recipe + overrides → candidates → result → record ------------------------------------
@dataclass
class Plan:
    """What to run: a model, the config it starts from, and whether to search.

    The config of a candidate is `{**base, **candidate, **overrides}`: a recipe's fields, then
    the search's variation (if any), then what the user fixed on the command line, which wins.
    `budget_minutes` (> 0) is the wall-clock training budget of the whole search, shared evenly
    by its candidates; a neural model's decay schedule ends with its share.
    """

    model: str
    base: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    search: list[dict[str, Any]] | None = None
    budget_minutes: float = 0.0
    recipe: str | None = None
    ties: Ties = "expected"
    exclude_seen: bool = True
    refit: bool = False
    select_metric: str = "NDCG@10"
    rerank: RerankSpec | None = None
    repeats: bool = False  # the repeat-aware protocol: seen items are candidates (evaluate)
    cold: str | None = None  # the cold-start protocol: "random:0.1" / "time:0.1" (cold_item_split)

    @classmethod
    def from_recipe(
        cls,
        recipe: Recipe,
        *,
        overrides: dict[str, Any] | None = None,
        search: bool = False,
        budget_minutes: float | None = None,
        **options: Any,
    ) -> Plan:
        """A plan from a recipe; `budget_minutes=None` keeps the recipe's own budget."""
        candidates = None
        if search:  # the recipe itself first, then its variations (the model's own if it has none)
            candidates = [{}, *recipe.search] if recipe.search else registry.get(recipe.model).search_space()
        budget = recipe.budget_minutes if budget_minutes is None else budget_minutes
        return cls(
            model=recipe.model,
            base=dict(recipe.params),
            overrides=dict(overrides or {}),
            search=candidates,
            budget_minutes=budget,
            recipe=recipe.name,
            **options,
        )

    def candidates(self) -> list[dict[str, Any]]:
        """Each candidate's full config before the budget (checked: ConfigError on a bad field)."""
        cls = registry.get(self.model)
        if self.ties not in TIES:
            raise ConfigError(f"ties must be one of {', '.join(TIES)}, got {self.ties!r}")
        if self.budget_minutes < 0:
            raise ConfigError(f"budget_minutes must be >= 0, got {self.budget_minutes}")
        if self.cold is not None:
            parse_cold(self.cold)
            if self.repeats:
                raise ConfigError("cold and repeats are separate protocols: choose one")
        out = []
        for cand in self.search if self.search is not None else [{}]:
            params = {**self.base, **cand, **self.overrides}
            cls.config_class.from_dict(params, where=f"{self.recipe or self.model}")
            out.append(params)
        return out

    def grid(self) -> list[dict[str, Any]]:
        """The candidates with the budget applied to models that have one."""
        cands = self.candidates()
        cls = registry.get(self.model)
        if self.budget_minutes <= 0 or "max_minutes" not in cls.config_class.field_types():
            return cands
        share = self.budget_minutes / len(cands)
        # the user's own max_minutes wins over the budget; a recipe's is capped by it
        if "max_minutes" in self.overrides:
            return cands
        return [{**c, "max_minutes": min(share, c.get("max_minutes") or share)} for c in cands]


@dataclass
class Run:
    result: ExperimentResult
    record: dict[str, Any]
    data: Interactions
    split: Split


def run(
    plan: Plan,
    data: Interactions,
    *,
    dataset: str,
    split: Split | None = None,
    distributed: bool = False,
    on_candidate: OnCandidate | None = None,
) -> Run:
    """Run `plan` on `data` under the leave-one-out protocol and build its record."""
    grid = plan.grid()  # before any work: a bad field fails here
    cold = None
    if plan.cold is not None:
        by, fraction = parse_cold(plan.cold)
        cold = cold_item_split(data, fraction, by=by)
        data, split = cold.warm_log, cold.warm
    split = split if split is not None else leave_one_out(data)
    res = select_and_test(
        plan.model,
        split,
        grid=grid,
        select_metric=plan.select_metric,
        ties=plan.ties,
        exclude_seen=plan.exclude_seen,
        on_candidate=on_candidate,
        distributed=distributed,
        refit=plan.refit,
        rerank=plan.rerank,
        repeats=plan.repeats,
    )
    rec = record(plan, res, split, dataset=dataset, n_items=data.n_items)
    if cold is not None:
        rec["cold"] = {"protocol": cold.protocol, **cold_report(res.model, cold)}
    return Run(res, rec, data, split)


COLD_NEIGHBOURS, COLD_TEMPERATURE = 10, 0.05  # as `playnext serve` borrows (Settings.cold_*)


def cold_report(model: Any, split: ColdSplit, text_encoder: str = "minilm") -> dict[str, Any]:
    """`model` on the cold questions (evaluate/cold.py), beside what it would be without content:
    the model's own content vectors when it has a content tower; neighbour borrowing from its
    warm scores (by `text_encoder` texts, as serving does); id-only; cold-set popularity. Each
    scorer that ranks cold items also runs with live counts (`…+live`), their weight chosen on a
    seeded half of the questions' users (`weights`); every figure is on the other half."""
    valid, test = split.halves()
    scorers: dict[str, Scorer] = {}
    if model.has_content:
        vecs = model.content_vectors(split.cold_meta)
        scorers["content"] = lambda u, h: model.score_new_items(u, h, vecs)
    encoder = make_encoder(text_encoder)
    if encoder is not None:
        known = encoder.encode(item_texts(split.warm_log.meta))
        new = encoder.encode(item_texts(split.cold_meta))
        nb, w = cold_neighbours(new, known, COLD_NEIGHBOURS, COLD_TEMPERATURE)
        scorers["borrowing"] = borrowing(model.score, nb, w)
    out: dict[str, dict[str, float]] = {}
    weights: dict[str, dict[str, Any]] = {}
    for name, scorer in scorers.items():
        out[name] = evaluate_cold(scorer, test)
        best, seen = choose_live_weight(scorer, valid)
        weights[name] = {"chosen": best, "valid/cold/NDCG@10": {f"{k:g}": v for k, v in seen.items()}}
        out[name + "+live"] = evaluate_cold(with_live_counts(scorer, test, best), test)
    out["id-only"] = evaluate_cold(id_only(model.score, split.n_cold), test)
    out["cold-popularity"] = evaluate_cold(cold_popularity(test), test, within_only=True)
    return {
        "scorers": out,
        "live_weights": weights,
        "questions": {"valid": len(valid.cold), "test": len(test.cold)},
    }


def record(plan: Plan, res: ExperimentResult, split: Split, *, dataset: str, n_items: int) -> dict[str, Any]:
    """The one run record (benchmarks/results/*.json, `playnext train --json`, artifact.json)."""
    chosen = res.chosen if res.chosen is not None else res.model
    report = chosen.training_report()  # the selection run's curve and best epoch
    params = chosen.config.to_dict()
    return {
        "model": plan.model,
        "dataset": dataset,
        "recipe": plan.recipe,
        "seed": params.get("seed"),
        "metrics": res.test.metrics,
        "valid_metrics": res.valid_metrics,
        "params": params,
        # whether the scores read the question's time (its target's, in the protocol): the
        # README's tables show each model with and without it
        "request_time": res.model.uses_request_time,
        "refit_params": res.model.config.to_dict() if plan.refit else None,
        "candidates": res.candidates,
        "search": plan.search is not None,
        "budget_minutes": plan.budget_minutes or None,
        "protocol": protocol_description(split, plan.ties, plan.exclude_seen, plan.refit, plan.repeats),
        "n_users_evaluated": res.test.n_users,
        **({"n_users_by_target": res.test.groups} if plan.repeats else {}),
        "n_items": n_items,
        "n_params": res.model.n_params(),
        "train_seconds": res.train_seconds,
        "eval_seconds": res.test.seconds,
        "seconds_per_epoch": report.seconds_per_epoch if report else None,
        "epochs": report.epochs if report else None,
        "best_epoch": report.best_epoch if report else None,
        "history": report.history if report else None,
        "stopped": (report.stopped or None) if report else None,  # epochs | patience | budget
        "stopped_at": (report.stopped_at or None) if report else None,  # {epoch, step, steps, seconds}
        "peak_rss_bytes": peak_rss_bytes(),
        "world_size": distributed_world(),
        "environment": environment(),
        **(
            {"rerank": plan.rerank.describe(), "metrics_without_rerank": res.test_without_rerank.metrics}
            if plan.rerank is not None and res.test_without_rerank is not None
            else {}
        ),
    }


def popularity_baseline(plan: Plan, split: Split) -> dict[str, Any]:
    """Popularity on the run's own split and protocol (seconds): the number a model must beat,
    kept in the record as `baseline`."""
    res = select_and_test(
        "popular", split, grid=[{}], ties=plan.ties, exclude_seen=plan.exclude_seen, repeats=plan.repeats
    )
    return {"model": "popular", "metrics": res.test.metrics, "valid_metrics": res.valid_metrics}


def distributed_world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def environment() -> dict[str, Any]:
    """Where a number was measured: versions, threads, machine, GPU."""
    return {
        "playnext": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def fit_and_save(
    name: str, params: dict[str, Any], train: Interactions, valid: EvalSet | None, out_dir: str
) -> None:
    """Fit registry model `name` on this rank's share; rank 0 saves it and its training report
    (`report.json`) to `out_dir`, readable by every rank on return. A `run_local` target."""
    import dataclasses
    import json

    import torch.distributed as dist

    from playnext.models.registry import create

    model = create(name, **params).fit(train, valid)
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed_world() > 1 else (0, 1)
    if rank == 0:
        model.save(out_dir)
        report = model.report_ if isinstance(model, NeuralRecommender) else None
        doc = dataclasses.asdict(report) if report is not None else {}
        (Path(out_dir) / "report.json").write_text(json.dumps({**doc, "world_size": world}))
    if world > 1:
        dist.barrier()  # the saved model is there for every rank once this returns
