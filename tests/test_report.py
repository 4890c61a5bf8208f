"""The run report and the training record behind it: `train --out` writes report.html,
`playnext report DIR` rebuilds it, `pn.Run.report` writes it from Python, and a piped
`train --json` keeps stdout one JSON object while stderr tells the epochs and the budget."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from playnext.cli import app
from playnext.report import read_record, render

runner = CliRunner()
IMG = "data:image/png;base64,"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SASRec trained for 2 epochs by `playnext train --out`: its model folder."""
    root = tmp_path_factory.mktemp("report")
    lines = [f"u{u} m{(u % 20 + j) % 25}" for u in range(60) for j in range(8)]
    (root / "log.txt").write_text("\n".join(lines) + "\n")
    args = ["train", "--model", "sasrec", "--dataset", "seq", "--path", str(root / "log.txt")]
    args += ["--budget-minutes", "0", "--out", str(root / "model"), "--json"]
    for p in ("epochs=2", "eval_every=1", "dim=8", "n_blocks=1", "n_heads=1", "max_len=10", "verbose=false"):
        args += ["--param", p]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return root / "model"


def test_train_out_writes_a_self_contained_report(trained: Path) -> None:
    page = (trained / "report.html").read_text()
    record = read_record(trained)
    ndcg = record["metrics"]["NDCG@10"]
    assert f"{ndcg:.4f}" in page and "validation" in page and "test" in page
    assert page.count(IMG) == 2  # the learning curve and the test metrics beside popularity
    assert not re.search(r"(src|href)=['\"]?https?:", page)  # nothing fetched: no CDN
    assert record["baseline"]["model"] == "popular" and "NDCG@10" in record["baseline"]["metrics"]
    assert f"{record['baseline']['metrics']['NDCG@10']:.4f}" in page
    assert record["data_stats"]["users"] == 60 and "Events per user" in page
    assert record["stopped"] == "epochs" and record["stopped_at"]["epoch"] == 2
    assert [h["epoch"] for h in record["history"]] == [1, 2] and "elapsed" in record["history"][0]


def test_report_command_rebuilds_it_from_the_folder(trained: Path, tmp_path: Path) -> None:
    (trained / "report.html").unlink()
    r = runner.invoke(app, ["report", str(trained)])
    assert r.exit_code == 0, r.output
    assert (trained / "report.html").exists() and "wrote" in r.stdout
    r = runner.invoke(app, ["report", str(trained), "--out", str(tmp_path / "elsewhere.html")])
    assert r.exit_code == 0, r.output
    assert IMG in (tmp_path / "elsewhere.html").read_text()


def test_report_of_a_folder_without_a_record_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = runner.invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "artifact.json" in r.stderr
    assert not (tmp_path / "report.html").exists()


def test_a_record_without_epochs_or_baseline_still_renders() -> None:
    page = render({"model": "ease", "dataset": "x", "metrics": {"NDCG@10": 0.25}})
    assert "0.2500" in page and "trains without epochs" in page and IMG in page


def test_run_report_from_python(tmp_path: Path) -> None:
    import pandas as pd

    import playnext as pn

    rows = [(u, (u % 20 + j) % 25, j) for u in range(60) for j in range(8)]
    data = pn.Dataset.from_frame(
        pd.DataFrame(rows, columns=["uid", "iid", "ts"]), user="uid", item="iid", time="ts"
    )
    run = pn.train("ease", data)
    assert run.record["baseline"]["model"] == "popular"  # as `playnext train` records it
    path = run.report(tmp_path)
    assert path == (tmp_path / "report.html").resolve() and IMG in path.read_text()
    assert run.report(tmp_path / "r.html").name == "r.html"


def test_piped_train_json_with_a_budget_that_cuts_the_first_epoch(tmp_path: Path) -> None:
    """stdout one JSON object; stderr the projection and the epoch line; the record says where
    and why training stopped: within one batch (plus the validation after it) of 0.02 minutes."""
    budget_s = 0.02 * 60
    args = ["-m", "playnext.cli", "train", "--model", "sasrec", "--dataset", "synthetic"]
    args += ["--option", "n_users=1500", "--budget-minutes", "0.02", "--json"]
    args += ["--param", "batch_size=2", "--param", "dim=16", "--param", "max_len=50"]  # ≈ 750 steps
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.strip()]
    record = json.loads(line)
    assert record["stopped"] == "budget"
    at = record["stopped_at"]
    assert at["epoch"] == 1 and 1 <= at["step"] < at["steps"], at
    # it stops when the next step (this epoch's mean so far, at most seconds/step) would end past
    # the budget, so up to one mean step early; late by at most one batch (a loaded machine: 10 s)
    mean_step = at["seconds"] / at["step"]
    assert budget_s - mean_step - 1e-3 <= at["seconds"] < budget_s + 10, at
    assert record["history"][0]["fraction"] < 1 and record["best_epoch"] == 1
    err = done.stderr
    assert err.count("one epoch ≈") == 1 and "> the 0.02-minute budget" in err, err
    assert re.search(
        r"^epoch 1/\d+  loss \S+  valid NDCG@10 \S+ .*stopped by the budget at step", err, re.M
    ), err
