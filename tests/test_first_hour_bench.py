"""benchmarks/first_hour.py: what its records compare is computed as they say (the timings
themselves come from the benchmark run, never from here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from benchmarks import first_hour, report


def test_one_validation_is_the_longest_gap_between_an_epochs_training_and_its_end() -> None:
    history = [
        {"epoch": 1, "seconds": 10.0, "elapsed": 10.5},
        {"epoch": 2, "seconds": 10.0, "elapsed": 23.5, "valid_NDCG@10": 0.1},  # 3 s of validation
        {"epoch": 3, "seconds": 4.0, "elapsed": 29.0, "fraction": 0.4, "valid_NDCG@10": 0.2},
    ]
    assert first_hour.one_validation_seconds(history) == pytest.approx(3.0)
    # seconds per epoch: full epochs after the first (a budget-cut one is not an epoch)
    assert first_hour.epoch_seconds(history) == pytest.approx(10.0)
    assert first_hour.epoch_seconds(history[:1]) == pytest.approx(10.0)


def test_the_id_only_catalog_has_every_item(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    first_hour.id_only_log(path, n_items=300, n_users=500)
    df = pl.read_csv(path)
    assert df.columns == ["user", "item", "timestamp"]
    assert df["item"].n_unique() == 300 and df["user"].n_unique() == 500


def test_the_records_table_names_each_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    run = {"seconds_per_epoch": 30.0, "NDCG@10": 0.05, "valid_NDCG@10": 0.06}
    records: list[dict[str, Any]] = [
        {"tag": "first_hour-five_minutes", "dataset": "ml-latest-small", "metrics": {"total_seconds": 250.0}},
        {"tag": "first_hour-serve-empty", "dataset": "ids", "metrics": {"ready_seconds": 4.2}},
        {
            "tag": "first_hour-defaults",
            "dataset": "steam-200k",
            "metrics": {"speedup_seconds_per_epoch": 3.0},
            "runs": {"old": run, "new": {**run, "seconds_per_epoch": 10.0}},
            "target_speedup": 3.0,
        },
    ]
    for r in records:
        r.update(target_seconds=300.0 if "five" in r["tag"] else 15.0, target_met=True, load_average=1.0)
    (tmp_path / "first_hour.json").write_text(json.dumps(records))
    rows = [ln for ln in report.first_hour_table().splitlines() if ln.startswith("| ") and "yes" in ln]
    assert len(rows) == 3
    assert "250 s" in rows[0] and "4.2 s" in rows[1] and "30 → 10 s/epoch (3.0×)" in rows[2]


def test_the_five_minute_path_times_the_readmes_train_line() -> None:
    """The README's five-minute path is true as written only if the benchmark runs its budget."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("## Your own data in five minutes", 1)[1]
    (line,) = [ln for ln in block.splitlines() if ln.startswith("$PN train ")][:1]
    assert f"--budget-minutes {first_hour.FIVE_MINUTE_BUDGET:g} " in line
