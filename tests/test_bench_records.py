"""Benchmark records: a rerun replaces its own record; a changed recipe under an old tag says so."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from benchmarks import common


def _run(tag: str, dim: int, ndcg: float) -> dict[str, object]:
    key = {"model": "hstu", "dataset": "d", "seed": 0, "tag": tag}
    return {**key, "params": {"dim": dim}, "metrics": {"NDCG@10": ndcg}}


def test_replacing_a_run_with_other_params_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    with caplog.at_level(logging.WARNING, logger="benchmarks"):
        common.append_record("d", _run("deep", 64, 0.1))
        common.append_record("d", _run("deep", 64, 0.2))  # a rerun of the same recipe: silent
        assert not caplog.records
        common.append_record("d", _run("other", 128, 0.3))  # another tag: kept beside it, silent
        assert not caplog.records
        common.append_record("d", _run("deep", 128, 0.4))
    assert len(caplog.records) == 1 and "dim" in caplog.records[0].getMessage()
    records = json.loads((tmp_path / "d.json").read_text())
    assert sorted((r["tag"], r["metrics"]["NDCG@10"]) for r in records) == [("deep", 0.4), ("other", 0.3)]


def test_a_broken_results_file_is_named_kept_and_the_new_run_saved_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    broken = '[\n {"model": "hstu",\n  "seed": }\n]'
    (tmp_path / "d.json").write_text(broken)
    with pytest.raises(ValueError, match=r"d\.json:3:\d+: not valid JSON") as err:
        common.append_record("d", _run("deep", 64, 0.1))
    assert (tmp_path / "d.json").read_text() == broken
    (unsaved,) = tmp_path.glob("d.json.*.unsaved")
    assert str(unsaved) in str(err.value)
    assert json.loads(unsaved.read_text())[0]["metrics"] == {"NDCG@10": 0.1}
    with pytest.raises(ValueError, match=r"d\.json:3:"):
        common.load_records()


def test_refit_from_a_recorded_selection_equals_refit_in_one_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    import polars as pl
    from benchmarks import deep

    from playnext.data.interactions import Interactions
    from playnext.data.split import leave_one_out
    from playnext.experiment import select_and_test

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(deep, "RESULTS", tmp_path)
    rows = [{"user": f"u{u}", "item": f"m{(u + j) % 30}"} for u in range(60) for j in range(10)]
    split = leave_one_out(Interactions.from_frame(pl.DataFrame(rows)))
    cfg = {
        "dim": 16,
        "max_len": 8,
        "epochs": 3,
        "lr": 1e-2,
        "batch_size": 32,
        "verbose": False,
        "patience": 0,
    }
    whole = select_and_test("sasrec", split, grid=[cfg], refit=True)
    chosen = whole.chosen
    source = {
        **{"model": "sasrec", "dataset": "d", "seed": 0, "tag": "sel"},
        **{"params": chosen.config.to_dict(), "best_epoch": chosen.report_.best_epoch},
        **{"valid_metrics": whole.valid_metrics, "metrics": whole.valid_metrics},
    }
    common.append_record("d", source)
    args = argparse.Namespace(dataset="d", refit_from="sel", tag="refit", set=[])
    run_only = {"checkpoint_dir": str(tmp_path / "ck"), "resume": False}
    deep.refit_from_record(args, "sasrec", 0, split, run_only)
    assert list((tmp_path / "ck" / "refit").iterdir()), "--checkpoints must reach the refit run"
    record = next(r for r in common.load_records() if r["tag"] == "refit")
    config = type(whole.model.config).from_dict({**record["refit_params"], "checkpoint_dir": ""})
    assert config.to_dict() == whole.model.config.to_dict()  # the refit config, written in full
    assert record["metrics"] == whole.test.metrics  # the same model, so the same test answer
    assert "refit" in record["protocol"] and record["refit_from"]["best_epoch"] == source["best_epoch"]
    # --set reaches the refit: here, stop part-way down the selection run's 3-epoch schedule
    deep.refit_from_record(
        argparse.Namespace(**{**vars(args), "tag": "part", "set": ["schedule_epochs=3"]}), "sasrec", 0, split
    )
    part = next(r for r in common.load_records() if r["tag"] == "part")
    assert (
        part["refit_params"]["schedule_epochs"] == 3
        and part["refit_params"]["epochs"] == source["best_epoch"]
    )
    with pytest.raises(SystemExit, match="found 0"):
        deep.refit_from_record(argparse.Namespace(**{**vars(args), "refit_from": "nope"}), "sasrec", 0, split)


def test_generated_tables_match_the_records() -> None:
    """docs/results.md and the README's tables are `python -m benchmarks.report`'s output for the
    committed records: a new record, or a hand edit of a number, fails here until it is rerun."""
    from benchmarks import report

    records = common.load_records()
    assert report.DOC.read_text() == report.results_doc(records)
    text = report.README.read_text()
    assert report.readme(text, records) == text
    assert "hstu-large" in report.headline(records)
    changed = [
        {**r, "metrics": {**r["metrics"], "NDCG@10": 0.5}} if r.get("model") == "sasrec" else r
        for r in records
    ]
    assert report.readme(text, changed) != text
