"""benchmarks.peers plumbing on fake inputs: steady-state epochs, ratios, records, id mapping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from benchmarks import peers

from playnext import recipes
from playnext.data.interactions import Interactions
from playnext.models.registry import create


def _side(library: str, epochs: list[float], rec_s: float, ndcg: float, hr: float) -> peers.Side:
    return peers.Side(
        library=library,
        version="9.9",
        epoch_seconds=epochs,
        train_seconds=sum(epochs),
        recommend_seconds=rec_s,
        metrics={"NDCG@10": ndcg, "HR@10": hr, "lists/NDCG@10": ndcg, "lists/HR@10": hr},
        n_params=10,
        params={},
    )


def test_steady_seconds_skip_the_first_epoch_unless_it_is_the_only_one() -> None:
    assert peers.steady_seconds([30.0, 4.0, 6.0]) == 5.0
    assert peers.steady_seconds([7.0]) == 7.0
    with pytest.raises(ValueError, match="no epochs"):
        peers.steady_seconds([])


def test_records_carry_playnext_over_rectools_ratios_and_the_table_shows_them() -> None:
    ours = _side("playnext", [9.0, 2.0, 4.0], 1.0, 0.2, 0.3)
    theirs = _side("rectools", [20.0, 6.0, 6.0], 4.0, 0.1, 0.4)
    cfg = {"max_len": 200, "epochs": 3}
    records = peers.build_records(ours, theirs, dataset="d", config=cfg, seed=0, run={"threads": 2}, tag="t")
    assert [r["model"] for r in records] == ["sasrec (playnext)", "sasrec (rectools)"]
    assert all(r["tag"] == "t" and r["params"] == cfg and r["threads"] == 2 for r in records)
    assert records[0]["metrics"]["seconds_per_epoch"] == 3.0  # (2 + 4) / 2, the first epoch left out
    ratio = records[0]["ratio_playnext_over_rectools"]
    assert ratio == records[1]["ratio_playnext_over_rectools"]
    assert ratio == pytest.approx(
        {"seconds_per_epoch": 0.5, "train_seconds": 0.46875, "recommend_seconds": 0.25, "NDCG@10": 2.0}
        | {"HR@10": 0.75}
    )
    table = peers.markdown(records)
    assert "| NDCG@10 | 0.2000 | 0.1000 | 2.00 |" in table
    assert "| s / epoch (mean of epochs 2..N) | 3.00 | 6.00 | 0.50 |" in table


def test_a_zero_figure_gets_no_ratio() -> None:
    assert peers.ratios({"a": 1.0, "b": 2.0, "c": 1.0}, {"a": 0.0, "b": 4.0}) == {"b": 0.5}


def test_rectools_output_lands_on_playnext_ids_and_unknown_items_cannot_be_ranked(tmp_path: Path) -> None:
    rows = [("u1", "a"), ("u1", "b"), ("u2", "c"), ("u2", "a"), ("u2", "d")]
    data = Interactions.from_frame(pl.DataFrame({"user": [u for u, _ in rows], "item": [i for _, i in rows]}))
    # RecTools' own order of users and items, and item "d" unknown to it
    (tmp_path / "score_ids.json").write_text(json.dumps({"users": ["u2", "u1"], "items": ["c", "a", "b"]}))
    np.save(tmp_path / "scores.npy", np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32))
    (tmp_path / "reco.csv").write_text("user_id,item_id,rank\nu1,c,1\nu2,b,1\n")
    full, lists, n_known = peers.rectools_matrices(data, tmp_path)
    u1, u2 = data.users.to_internal(["u1", "u2"], kind="user")
    a, b, c, d = data.items.to_internal(["a", "b", "c", "d"])
    assert n_known == 3
    assert full[u2, [c, a, b]].tolist() == [1.0, 2.0, 3.0] and full[u1, [c, a, b]].tolist() == [4.0, 5.0, 6.0]
    assert np.isneginf(full[:, d]).all()
    assert lists[u1, c] == peers.K and lists[u2, b] == peers.K
    assert np.count_nonzero(lists) == 2


def test_seconds_to_reach_is_the_first_evaluation_at_the_level() -> None:
    curve = [[10.0, 0.05], [20.0, 0.11], [30.0, 0.10], [40.0, 0.12]]
    assert peers.seconds_to_reach(curve, 0.11) == 20.0
    assert peers.seconds_to_reach(curve, 0.115) == 40.0
    assert peers.seconds_to_reach(curve, 0.2) is None


def test_curve_records_cross_reference_the_other_final() -> None:
    curves = {"playnext": [[5.0, 0.10], [10.0, 0.15]], "rectools": [[30.0, 0.12], [60.0, 0.14]]}
    a, b = peers.curve_records(
        curves, {"playnext": {"library": "playnext"}, "rectools": {"library": "rectools"}}
    )
    assert a["metrics"]["seconds_to_other_final"] == 10.0  # 0.15 >= rectools' final 0.14 at 10 s
    assert b["metrics"]["seconds_to_other_final"] is None  # rectools never reached 0.15
    assert a["metrics"]["other_final_valid_NDCG@10"] == 0.14 and b["metrics"]["valid_NDCG@10"] == 0.14


def test_overrides_read_json_values_and_refuse_a_bare_key() -> None:
    assert peers.overrides(["adam_beta2=0.98", "block=sasrec", "scale_items=false"]) == {
        "adam_beta2": 0.98,
        "block": "sasrec",
        "scale_items": False,
    }
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        peers.overrides(["block"])


def test_curve_trains_the_shipped_recipe_under_the_curves_own_budget() -> None:
    """playnext's curve side is the shipped sasrec recipe (it once built the config defaults, and
    then the recipe's own max_minutes collided with the curve's)."""
    shipped = recipes.load("sasrec").params
    params = peers.curve_params({"dropout": 0.3}, minutes=8.0, seed=1)
    config = create("sasrec", **params).config
    for key in ("dim", "block", "init", "adam_beta2", "length_buckets", "lr"):
        assert getattr(config, key) == shipped[key], key
    assert (config.dropout, config.max_minutes, config.eval_every, config.patience) == (0.3, 8.0, 1, 0)
    assert config.seed == 1
