"""`evaluate` end to end against brute force, and model selection that never peeks at test."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import playnext.evaluate.protocol as protocol
import playnext.models.registry as registry
from playnext.data.interactions import Histories, Interactions
from playnext.data.split import EvalSet, Split, leave_one_out
from playnext.evaluate.protocol import evaluate
from playnext.experiment import select_and_test
from playnext.models.base import ModelConfig, Recommender

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- brute-force reference (independent of playnext.evaluate) -----------------------------------


def metrics_from_ranks(ranks: Sequence[int | None], n_targets: int, ks: Sequence[int]) -> dict[str, float]:
    found = [r for r in ranks if r is not None]
    out = {"MRR": 1.0 / min(found) if found else 0.0}
    for k in ks:
        hits = [r for r in found if r <= k]
        idcg = sum(1.0 / math.log2(i + 1) for i in range(1, min(n_targets, k) + 1))
        out[f"HR@{k}"] = 1.0 if hits else 0.0
        out[f"NDCG@{k}"] = sum(1.0 / math.log2(r + 1) for r in hits) / idcg
        out[f"Recall@{k}"] = len(hits) / n_targets
    return out


def brute_user(scores, exclude, targets, ks, ties) -> dict[str, float]:
    cand = [i for i in range(len(scores)) if i not in set(exclude)]
    if ties != "expected":
        after = ties == "pessimistic"
        ranks: list[int | None] = []
        for t in targets:
            if t not in cand:
                ranks.append(None)
                continue
            order = sorted(cand, key=lambda i, t=t: (-scores[i], (i == t) == after))
            ranks.append(order.index(t) + 1)
        return metrics_from_ranks(ranks, len(targets), ks)
    # expected: average over every ordering of tied candidates
    levels = sorted({scores[i] for i in cand}, reverse=True)
    groups = [[i for i in cand if scores[i] == v] for v in levels]
    orders = [
        [i for g in combo for i in g]
        for combo in itertools.product(*(itertools.permutations(g) for g in groups))
    ]
    acc: dict[str, float] = {}
    for order in orders:
        m = metrics_from_ranks(
            [order.index(t) + 1 if t in order else None for t in targets], len(targets), ks
        )
        for key, v in m.items():
            acc[key] = acc.get(key, 0.0) + v / len(orders)
    return acc


def brute_evaluate(scores, exclude, targets, ks, ties, item_counts=None) -> dict[str, float]:
    rows = [r for r in range(len(scores)) if targets[r]]
    n_items = len(scores[0])
    sums: dict[str, float] = {}
    for r in rows:
        for key, v in brute_user(scores[r], exclude[r], targets[r], ks, ties).items():
            sums[key] = sums.get(key, 0.0) + v
    out = {key: v / len(rows) for key, v in sums.items()}
    k0 = min(ks)
    tops = {
        r: sorted(
            [i for i in range(n_items) if i not in set(exclude[r])], key=lambda i, s=scores[r]: (-s[i], i)
        )[:k0]
        for r in rows
    }
    out[f"Coverage@{k0}"] = len(set().union(*tops.values())) / n_items
    if item_counts is not None:
        total = sum(item_counts)
        info = [-math.log2(max(c, 1) / total) for c in item_counts]
        out[f"Novelty@{k0}"] = sum(sum(info[i] for i in tops[r]) / k0 for r in rows) / len(rows)
        out[f"ARP@{k0}"] = sum(sum(item_counts[i] for i in tops[r]) / k0 for r in rows) / len(rows)
    return out


# ---- generated evaluation sets ------------------------------------------------------------------


def f32(x: float) -> float:
    return float(np.float32(x))


@st.composite
def eval_sets(draw, max_items: int = 6, max_users: int = 7, min_candidates: int = 0):
    n = draw(st.integers(max(1, min_candidates + 1), max_items))
    n_users = draw(st.integers(1, max_users))
    int_scores = draw(st.booleans())
    value = st.integers(0, 2).map(float) if int_scores else st.floats(-5, 5, width=32).map(f32)
    # scores are a function of the user id, so batching cannot change what a user is scored
    scores = [[draw(value) for _ in range(n)] for _ in range(n_users)]
    item = st.integers(0, n - 1)
    exclude = [draw(st.lists(item, max_size=n - min_candidates, unique=True)) for _ in range(n_users)]
    targets = [
        draw(st.lists(item, min_size=1 if u == 0 else 0, max_size=min(3, n), unique=True))
        for u in range(n_users)
    ]
    return scores, exclude, targets


def build(scores, exclude, targets, user_ids=None):
    users = np.arange(len(scores)) if user_ids is None else np.asarray(user_ids)
    hist = Histories.from_lists(exclude)
    data = EvalSet(users, hist, Histories.from_lists(targets), hist)
    table = torch.tensor(scores, dtype=torch.float32)
    by_user = {int(u): r for r, u in enumerate(users)}

    def scorer(batch_users: np.ndarray, history: Histories) -> torch.Tensor:
        # the scorer sees each user's own history: check the batch was cut consistently
        for u, h in zip(batch_users, (history[i] for i in range(len(history))), strict=True):
            assert h.tolist() == list(exclude[by_user[int(u)]])
        return table[[by_user[int(u)] for u in batch_users]].clone()

    return data, scorer


def assert_metrics(got: dict[str, float], ref: dict[str, float]) -> None:
    assert set(got) == set(ref)
    for key, v in ref.items():
        assert got[key] == pytest.approx(v, rel=1e-9, abs=1e-12), key


# ---- evaluate == brute force, independent of batching ------------------------------------------


@SETTINGS
@given(eval_sets(), st.sampled_from(["expected", "pessimistic", "optimistic"]))
def test_evaluate_equals_brute_force(case, ties):
    scores, exclude, targets = case
    data, scorer = build(scores, exclude, targets)
    ks = (1, 2, 5)
    res = evaluate(scorer, data, len(scores[0]), ks=ks, ties=ties)
    assert_metrics(res.metrics, brute_evaluate(scores, exclude, targets, ks, ties))
    assert res.n_users == sum(1 for t in targets if t)


@SETTINGS
@given(eval_sets(max_items=8, min_candidates=2))
def test_evaluate_novelty_and_arp_equal_brute_force(case):
    scores, exclude, targets = case
    n = len(scores[0])
    counts = np.arange(n, dtype=np.int64) % 4  # zeros included: clipped to 1 for self-information
    data, scorer = build(scores, exclude, targets)
    res = evaluate(scorer, data, n, ks=(2, 3), ties="pessimistic", item_counts=counts)
    assert_metrics(
        res.metrics, brute_evaluate(scores, exclude, targets, (2, 3), "pessimistic", counts.tolist())
    )


@SETTINGS
@given(eval_sets(max_items=6))
def test_evaluate_without_exclusion_ranks_seen_items_too(case):
    scores, exclude, targets = case
    data, scorer = build(scores, exclude, targets)
    res = evaluate(scorer, data, len(scores[0]), ks=(1, 3), exclude_seen=False)
    nothing = [[] for _ in scores]
    assert_metrics(res.metrics, brute_evaluate(scores, nothing, targets, (1, 3), "expected"))


@SETTINGS
@given(eval_sets(max_items=30, max_users=12), st.sampled_from(["expected", "pessimistic"]))
def test_batching_does_not_change_metrics(case, ties):
    scores, exclude, targets = case
    n = len(scores[0])
    data, scorer = build(scores, exclude, targets, user_ids=np.arange(len(scores))[::-1] * 3 + 5)
    runs = [
        evaluate(
            scorer, data, n, ks=(1, 10), ties=ties, batch_size=b, keep_per_user=True, item_counts=np.ones(n)
        )
        for b in (1, 3, None)
    ]
    for other in runs[1:]:
        assert set(other.metrics) == set(runs[0].metrics)
        for key, v in runs[0].metrics.items():
            assert other.metrics[key] == pytest.approx(v, rel=1e-12, abs=1e-15), key
        for key, v in runs[0].per_user.items():
            np.testing.assert_array_equal(other.per_user[key], v)
        assert other.n_users == runs[0].n_users
    # the sampled protocol draws negatives per user in order: also batching-invariant
    sampled = [
        evaluate(scorer, data, n, ks=(5,), sampled_negatives=3, batch_size=b, seed=7) for b in (1, 3, None)
    ]
    for other in sampled[1:]:
        assert other.metrics == pytest.approx(sampled[0].metrics, rel=1e-12)


def test_progress_reports_every_evaluated_user():
    scores = [[float(i) for i in range(5)] for _ in range(7)]
    targets = [[0], [], [1], [2], [], [3], [4]]
    data, scorer = build(scores, [[] for _ in scores], targets)
    seen: list[int] = []
    res = evaluate(scorer, data, 5, ks=(1,), batch_size=2, progress=seen.append)
    assert sum(seen) == res.n_users == 5
    assert max(seen) <= 2


def test_scorer_with_wrong_shape_is_rejected():
    data, _ = build([[0.0, 1.0]], [[]], [[1]])
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda u, h: torch.zeros(len(u), 3), data, 2, ks=(1,))


def test_perfect_and_reversed_scorers():
    n = 20
    targets = [[i] for i in range(n)]
    hist = [[] for _ in range(n)]
    perfect = [[1.0 if i == t[0] else 0.0 for i in range(n)] for t in targets]
    reverse = [[0.0 if i == t[0] else float(i + 1) for i in range(n)] for t in targets]
    d, s = build(perfect, hist, targets)
    res = evaluate(s, d, n, ks=(1, 10))
    assert res.metrics["HR@1"] == res.metrics["NDCG@10"] == res.metrics["MRR"] == 1.0
    assert res.metrics["Coverage@1"] == 1.0
    d, s = build(reverse, hist, targets)
    res = evaluate(s, d, n, ks=(1, 10))
    assert res.metrics["HR@10"] == 0.0
    assert res.metrics["MRR"] == pytest.approx(1 / n)


# ---- select_and_test: choose on validation, test once ------------------------------------------


@dataclasses.dataclass
class PickConfig(ModelConfig):
    pick: int = 0


class PickModel(Recommender):
    """Scores one configured item above all others; records what it was shown."""

    name = "_pick_test_model"
    config_class = PickConfig
    config: PickConfig
    log: ClassVar[list[tuple[str, Any]]] = []

    def _fit(self, train: Interactions, valid: EvalSet | None) -> None:
        PickModel.log.append(("fit", (self.config.pick, train, valid)))

    def _score(self, users: np.ndarray, history: Histories) -> torch.Tensor:
        PickModel.log.append(("score", (self.config.pick, history)))
        s = -torch.arange(self.n_items_, dtype=torch.float32) / 1000.0
        s[self.config.pick] = 10.0
        return s.expand(len(users), -1).clone()

    def _state(self) -> dict[str, torch.Tensor]:
        return {}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        pass


@pytest.fixture
def pick_model(monkeypatch):
    real_get = registry.get
    monkeypatch.setattr(registry, "get", lambda name: PickModel if name == PickModel.name else real_get(name))
    PickModel.log = []
    return PickModel


def valid_vs_test_split() -> tuple[Split, int, int]:
    """Every user's second-last item is V and last item is T: validation prefers `pick=V`,
    test would prefer `pick=T`."""
    rows = []
    for u in range(6):
        for t, item in enumerate([f"a{u}", f"b{u}", "V", "T"]):
            rows.append({"user": f"u{u}", "item": item, "timestamp": t})
    data = Interactions.from_frame(pl.DataFrame(rows))
    v, t = data.items.to_internal(["V", "T"])
    return leave_one_out(data), int(v), int(t)


def spy_on_evaluate(monkeypatch, split: Split) -> list[str]:
    """Which question set each `evaluate` call scored, in order."""
    calls: list[str] = []
    real_evaluate = protocol.evaluate

    def spy(scorer, data, n_items, **kw):
        calls.append("valid" if data is split.valid else "test" if data is split.test else "other")
        return real_evaluate(scorer, data, n_items, **kw)

    monkeypatch.setattr(protocol, "evaluate", spy)
    return calls


def test_select_and_test_picks_best_validation_not_best_test(pick_model, monkeypatch):
    split, v_item, t_item = valid_vs_test_split()
    real_evaluate = protocol.evaluate
    seen: list[dict] = []
    calls = spy_on_evaluate(monkeypatch, split)
    res = select_and_test(
        PickModel.name,
        split,
        grid=[{"pick": t_item}, {"pick": v_item}, {"pick": 0}],
        on_candidate=lambda p, m: seen.append(dict(p)),
    )
    monkeypatch.setattr(protocol, "evaluate", real_evaluate)
    log = list(PickModel.log)
    assert res.params == {"pick": v_item}
    assert res.model.config.pick == v_item
    assert res.valid_metrics["NDCG@10"] == 1.0
    # test is evaluated exactly once, after every candidate, with the chosen model
    assert calls == ["valid", "valid", "valid", "test"]
    assert [c["params"]["pick"] for c in res.candidates] == [t_item, v_item, 0] == [s["pick"] for s in seen]
    # the chosen model's boosted item is in every test history, so it is excluded there
    assert res.test.metrics["MRR"] < 1.0
    # ...whereas the rejected candidate would have been perfect on test
    other = evaluate(
        lambda u, h: PickModel(PickConfig(pick=t_item)).fit(split.train).score(u, h),
        split.test,
        split.train.n_items,
    )
    assert other.metrics["NDCG@10"] == 1.0 > res.test.metrics["NDCG@10"]
    # models were only fitted on train (+ validation for early stopping), scored on test last
    fits = [a for kind, a in log if kind == "fit"]
    assert [f[0] for f in fits] == [t_item, v_item, 0]
    assert all(train is split.train and valid is split.valid for _, train, valid in fits)
    scored = [a for kind, a in log if kind == "score"]
    test_rows = split.test.history.lengths.sum()
    on_test = [pick for pick, hist in scored if hist.lengths.sum() == test_rows]
    assert on_test == [v_item]  # only the chosen model ever saw a test question
    assert scored[-1][0] == v_item


def test_refit_retrains_the_chosen_config_on_train_and_valid_then_tests_once(pick_model, monkeypatch):
    split, v_item, t_item = valid_vs_test_split()
    real_evaluate = protocol.evaluate
    calls = spy_on_evaluate(monkeypatch, split)
    res = select_and_test(PickModel.name, split, grid=[{"pick": t_item}, {"pick": v_item}], refit=True)
    monkeypatch.setattr(protocol, "evaluate", real_evaluate)
    # validation still chooses; the refit is not judged on validation, test comes once, last
    assert res.params == res.refit_params == {"pick": v_item}
    assert calls == ["valid", "valid", "test"]
    assert res.chosen is not res.model and res.model.config.pick == v_item
    fits = [a for kind, a in PickModel.log if kind == "fit"]
    assert [f[0] for f in fits] == [t_item, v_item, v_item]
    _, refit_train, refit_valid = fits[-1]
    assert refit_valid is None  # nothing left to choose on
    assert len(refit_train) == len(split.train) + len(split.valid)  # + each user's validation event
    assert refit_train.frame.equals(split.train_and_valid().frame)
    without = select_and_test(PickModel.name, split, grid=[{"pick": v_item}])
    assert without.refit_params is None and without.chosen is without.model


def test_select_and_test_respects_select_metric_and_keeps_first_on_ties(pick_model):
    split, v_item, t_item = valid_vs_test_split()
    # two configs that are identical on validation: the first one listed wins
    res = select_and_test(PickModel.name, split, grid=[{"pick": t_item}, {"pick": 0}], select_metric="HR@50")
    assert res.valid_metrics["HR@50"] == res.candidates[1]["valid"]["HR@50"]
    assert res.params == {"pick": t_item}
    res = select_and_test(PickModel.name, split, grid=[{"pick": 0}, {"pick": v_item}], select_metric="MRR")
    assert res.params == {"pick": v_item}


def test_select_and_test_fixed_params_override_grid(pick_model):
    split, v_item, t_item = valid_vs_test_split()
    res = select_and_test(PickModel.name, split, grid=[{"pick": t_item}], fixed={"pick": v_item})
    assert res.params == {"pick": v_item}
    assert len(res.candidates) == 1
