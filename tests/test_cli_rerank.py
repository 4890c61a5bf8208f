"""`--rerank` on the command line: `train` reports the re-ranker's cost beside the model's own
lists, `recommend` re-ranks and says what it relaxed; a bad value exits 2 naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from playnext.cli import app

runner = CliRunner()
WORLD = ["--dataset", "synthetic", "--option", "n_users=300", "--option", "n_items=400"]


def first_user(out: Path) -> str:
    import polars as pl

    return str(pl.read_parquet(out / "users.parquet")["user_id"][0])


def one_json(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("rerank") / "ease"
    r = runner.invoke(
        app,
        ["train", "--model", "ease", *WORLD, "--param", "l2=50", "--out", str(out), "--json",
         "--rerank", "calibrate:lambda=0.5"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    return out, one_json(r.stdout)


def test_train_reports_the_reranked_test_beside_the_model_own(model_dir: tuple[Path, dict]) -> None:
    _, record = model_dir
    assert record["rerank"] == {
        "calibrate": {"lambda": 0.5, "alpha": 0.01, "by": "genre", "lookahead": True},
        "pool": 100,
        "relevance": "rank",
        "slots": "equal",
    }
    plain, reranked = record["metrics_without_rerank"], record["metrics"]
    assert reranked["Miscalibration@10"] < 0.5 * plain["Miscalibration@10"]
    assert reranked["NDCG@10"] != plain["NDCG@10"]
    assert {"ILD-genre@10", "Novelty@10", "Coverage@10"} <= set(plain) & set(reranked)


def test_recommend_reranks_and_names_relaxed_quotas(model_dir: tuple[Path, dict]) -> None:
    out, _ = model_dir
    base = ["recommend", "--model-dir", str(out), "--user", first_user(out), "--k", "10", "--json"]
    plain = one_json(runner.invoke(app, base).stdout)
    assert plain["rerank"] is None
    r = runner.invoke(app, [*base, "--rerank", "quota:min_per_kind.game=10"])
    assert r.exit_code == 0, r.output
    got = one_json(r.stdout)
    assert [it["kind"] for it in got["items"]] == ["game"] * 10
    assert got["rerank"]["applied"] == ["quota"] and got["rerank"]["relaxed"] == []
    r = runner.invoke(app, [*base[:-1], "--rerank", "quota:min_per_kind.game=11", "--rerank", "pool=10"])
    assert r.exit_code == 0, r.output
    assert "relaxed: min_per_kind.game (wanted 11, got 10)" in " ".join(r.output.split())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("calibrate:lambda=1.5", "calibrate.lambda: must be in [0, 1], got 1.5"),
        ("shuffle", "unknown re-ranker(s) shuffle; known: novelty, calibrate, mmr, quota"),
        ("mmr:lambda", "expected key=value"),
        ("relevance=logit", "relevance: Input should be 'rank' or 'prob'"),
        ("quota:min_per_kind.tv=1", "unknown kind(s) tv; known: game, movie, music"),
    ],
)
def test_bad_rerank_values_exit_2_naming_the_field(
    model_dir: tuple[Path, dict], value: str, message: str
) -> None:
    out, _ = model_dir
    r = runner.invoke(
        app, ["recommend", "--model-dir", str(out), "--user", first_user(out), "--rerank", value]
    )
    assert r.exit_code == 2 and message in " ".join(r.output.split()), r.output


def test_train_refuses_a_bad_rerank_before_loading(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.csv")
    r = runner.invoke(
        app,
        ["train", "--model", "ease", "--dataset", "csv", "--path", missing, "--rerank", "novelty:weight=3"],
    )
    assert r.exit_code == 2 and "novelty.weight: must be in [0, 1], got 3" in r.output


def test_batch_output_takes_the_same_rerank(model_dir: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = model_dir
    recs = tmp_path / "recs.parquet"
    args = ["recommend", "--model-dir", str(out), "--all-users", "--out", str(recs), "--k", "5"]
    r = runner.invoke(app, [*args, "--rerank", "calibrate:lambda=2"])
    assert r.exit_code == 2 and "calibrate.lambda" in r.output and not recs.exists()
    r = runner.invoke(app, [*args, "--rerank", "calibrate"])
    assert r.exit_code == 0, r.output
    assert recs.exists()
