"""The application layer: choose on validation, test once, refit when asked (a planted model
whose validation and test answers differ shows which set chose what)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
import torch

import playnext.models.registry as registry
from playnext.data.interactions import Histories, Interactions
from playnext.data.split import EvalSet, Split, leave_one_out
from playnext.evaluate import protocol
from playnext.evaluate.protocol import evaluate
from playnext.experiment import select_and_test
from playnext.models.base import ModelConfig, Recommender

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
