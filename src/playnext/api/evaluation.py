"""`pn.evaluate` and `pn.compare`: the tie-exact full-ranking protocol as tidy tables.

Both score the split's test questions (or its validation ones, `on="valid"`) through
`playnext.evaluate.evaluate`, the code behind every number in `benchmarks/results/`; `compare`
adds a paired bootstrap over users, so a difference comes with its uncertainty.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from playnext.api.dataset import DataSplit, Frame
from playnext.api.model import Model, model_class
from playnext.data.split import EvalSet
from playnext.errors import ConfigError
from playnext.evaluate.protocol import EvalResult, model_scorer
from playnext.evaluate.protocol import evaluate as evaluate_scores

HISTORY_BINS = (1, 5, 20, 100)  # history-length segments: 1–4, 5–19, 20–99, 100+
BOOTSTRAP = 1000


def evaluate(model: Model, split: DataSplit, ks: Sequence[int] = (10, 50), *, on: str = "test") -> Frame:
    """Metrics of `model` on `split` as a tidy table: `segment, group, users, metric, value`.

    Segment "all" holds every metric (HR, NDCG, MRR, coverage, novelty…); "user" splits the
    per-user metrics by new users (no training event) and returning ones; "history" by the
    length of the history the question gives the model."""
    questions = _questions(split, on)
    res = _run(model, split, questions, ks)
    rows = [("all", "all", res.n_users, m, v) for m, v in res.metrics.items()]
    users = _answered(questions)
    train_len = np.bincount(split.split.train.user_idx, minlength=split.split.train.n_users)
    new = train_len[users] == 0
    hist_len = questions.history.lengths[_answered_rows(questions)]
    segments: list[tuple[str, dict[str, np.ndarray]]] = [
        ("user", {"new": new, "returning": ~new}),
        ("history", _history_groups(hist_len)),
    ]
    for segment, groups in segments:
        for group, mask in groups.items():
            if mask.any():
                rows += [
                    (segment, group, int(mask.sum()), m, float(v[mask].mean()))
                    for m, v in res.per_user.items()
                ]
    df = pl.DataFrame(rows, schema=["segment", "group", "users", "metric", "value"], orient="row")
    return model._names().table(df)


def compare(
    models: Sequence[Model | str],
    split: DataSplit,
    ks: Sequence[int] = (10,),
    *,
    on: str = "test",
    seed: int = 0,
    n_boot: int = BOOTSTRAP,
) -> Frame:
    """Several models on one split, one row a (model, metric): the value, its difference from
    the first model and a 95 % paired bootstrap interval of that difference (users resampled
    together, so every model is judged on the same resampled users). A name ("popular") is fitted
    on the split with its defaults."""
    if not models:
        raise ConfigError("compare: give at least one model")
    fitted = [_fitted(m, split) for m in models]
    questions = _questions(split, on)
    results = [_run(m, split, questions, ks) for m in fitted]
    names = _labels(models, fitted)
    base = results[0].per_user
    n = len(next(iter(base.values())))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))  # (n_boot, users): the same resamples for all
    rows = []
    for name, res in zip(names, results, strict=True):
        for metric, values in res.per_user.items():
            diff = values - base[metric]
            boot = diff[draws].mean(1)
            lo, hi = np.quantile(boot, [0.025, 0.975]) if name != names[0] else (0.0, 0.0)
            rows.append((name, metric, float(values.mean()), float(diff.mean()), float(lo), float(hi)))
    df = pl.DataFrame(
        rows, schema=["model", "metric", "value", "diff_vs_first", "ci_low", "ci_high"], orient="row"
    )
    return fitted[0]._names().table(df)


def _questions(split: DataSplit, on: str) -> EvalSet:
    if on not in ("test", "valid"):
        raise ConfigError(f"on must be 'test' or 'valid', got {on!r}")
    return split.split.test if on == "test" else split.split.valid


def _answered_rows(questions: EvalSet) -> np.ndarray:
    return np.flatnonzero(questions.targets.lengths > 0)  # evaluate's own rule: users with a target


def _answered(questions: EvalSet) -> np.ndarray:
    return questions.users[_answered_rows(questions)]


def _run(model: Model, split: DataSplit, questions: EvalSet, ks: Sequence[int]) -> EvalResult:
    if not ks or any(int(k) < 1 for k in ks):
        raise ConfigError(f"ks must be whole numbers >= 1, got {list(ks)}")
    rec = model.recommender
    train = split.split.train
    if rec.n_items_ != train.n_items:
        raise ConfigError(
            f"{type(model).__name__} knows {rec.n_items_} items and the split {train.n_items}: "
            "evaluate a model on the split (or dataset) it was fitted on"
        )
    return evaluate_scores(
        model_scorer(rec), questions, train.n_items, ks=tuple(int(k) for k in ks),
        item_counts=train.item_counts(), keep_per_user=True,
    )  # fmt: skip


def _fitted(m: Model | str, split: DataSplit) -> Model:
    if isinstance(m, str):
        return model_class(m)().fit(split)
    if m.artifact_ is None:
        raise ConfigError(f"compare: {type(m).__name__} is not fitted (fit it, or pass its name)")
    return m


def _labels(given: Sequence[Model | str], fitted: Sequence[Model]) -> list[str]:
    out: list[str] = []
    for g, m in zip(given, fitted, strict=True):
        label = g if isinstance(g, str) else type(m).__name__
        n = sum(1 for o in out if o == label or o.startswith(label + " #"))
        out.append(label if n == 0 else f"{label} #{n + 1}")
    return out


def _history_groups(lengths: np.ndarray) -> dict[str, np.ndarray]:
    edges: list[Any] = [*HISTORY_BINS, None]
    out = {}
    for lo, hi in itertools.pairwise(edges):
        label = f"{lo}-{hi - 1}" if hi is not None else f"{lo}+"
        out[label] = (lengths >= lo) & ((lengths < hi) if hi is not None else True)
    out = {"0": lengths == 0, **out}
    return out
