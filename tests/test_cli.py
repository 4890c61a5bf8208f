"""End-to-end CLI behaviour on tiny files the tests write: JSON contract, artifacts, clean errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from playnext.artifact import Artifact
from playnext.cli import app

runner = CliRunner()


@pytest.fixture()
def seq_file(tmp_path: Path) -> Path:
    """A `user item` file where every user walks items in order: i → i+1 → …"""
    lines = []
    for u in range(60):
        start = u % 20
        lines += [f"u{u} m{(start + j) % 25}" for j in range(8)]
    path = tmp_path / "log.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _json(result_stdout: str) -> dict:
    lines = [ln for ln in result_stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"stdout must be exactly one JSON object, got: {result_stdout!r}"
    return json.loads(lines[0])


def test_stats_json(seq_file: Path) -> None:
    r = runner.invoke(app, ["data", "stats", "--dataset", "seq", "--path", str(seq_file), "--json"])
    assert r.exit_code == 0, r.output
    stats = _json(r.stdout)
    assert (stats["users"], stats["items"], stats["interactions"]) == (60, 25, 480)
    assert stats["sequence_length"]["p50"] == 8


def test_train_json_save_and_recommend(seq_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    r = runner.invoke(
        app,
        [
            "train",
            "--model",
            "ease",
            "--dataset",
            "seq",
            "--path",
            str(seq_file),
            "--out",
            str(out),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    rec = _json(r.stdout)
    for key in ("dataset", "model", "protocol", "metrics", "n_users_evaluated", "train_seconds"):
        assert key in rec
    for key in ("HR@10", "NDCG@10", "HR@50", "NDCG@50", "MRR", "Recall@10", "Coverage@10"):
        assert 0.0 <= rec["metrics"][key] <= 1.0
    assert rec["n_users_evaluated"] == 60
    assert rec["protocol"]["ranking"].startswith("full")
    assert (out / "model.json").exists() and (out / "weights.safetensors").exists()
    assert not list(out.glob("*.pkl"))

    r = runner.invoke(app, ["recommend", "--model-dir", str(out), "--user", "u3", "--k", "5", "--json"])
    assert r.exit_code == 0, r.output
    items = _json(r.stdout)["items"]
    assert len(items) == 5 and all("title" in it for it in items)
    seen = {f"m{(3 + j) % 25}" for j in range(8)}
    assert not seen & {it["item_id"] for it in items}

    r = runner.invoke(app, ["recommend", "--model-dir", str(out), "--history", "m1,m2,m3"])
    assert r.exit_code == 0, r.output
    assert "m4" in r.stdout  # the planted next item


def test_unknown_ids_and_bad_params_exit_2(seq_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    runner.invoke(
        app, ["train", "--model", "popular", "--dataset", "seq", "--path", str(seq_file), "--out", str(out)]
    )
    r = runner.invoke(app, ["recommend", "--model-dir", str(out), "--user", "nobody"])
    assert r.exit_code == 2 and "nobody" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["recommend", "--model-dir", str(out), "--history", "m1,zzz"])
    assert r.exit_code == 2 and "zzz" in r.output
    r = runner.invoke(
        app, ["train", "--model", "ease", "--dataset", "seq", "--path", str(seq_file), "--param", "l2=-1"]
    )
    assert r.exit_code == 2 and "l2" in r.output
    r = runner.invoke(app, ["train", "--model", "nope", "--dataset", "seq", "--path", str(seq_file)])
    assert r.exit_code == 2 and "unknown model" in r.output


def test_bad_input_names_file_line_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("u1 m1\nu1 m2\nu2\nu2 m3\n")
    r = runner.invoke(app, ["data", "stats", "--dataset", "seq", "--path", str(bad)])
    assert r.exit_code == 2, r.output
    assert "bad.txt" in r.output and "line 3" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["data", "stats", "--dataset", "seq", "--path", str(tmp_path / "missing.txt")])
    assert r.exit_code == 2 and "missing.txt" in r.output


def test_failed_save_keeps_previous_artifact(
    seq_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "model"
    r = runner.invoke(
        app, ["train", "--model", "popular", "--dataset", "seq", "--path", str(seq_file), "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    art = Artifact.load(out)

    def boom(self: object, directory: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(type(art.model), "save", boom)
    with pytest.raises(OSError):
        art.save(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]


def _table_column(stdout: str, column: str) -> dict[str, float]:
    """One column of the first printed rich table that has it, by row name: {"popular": 0.0327, …}."""
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("┃") and f" {column} " in ln)
    names = [c.strip() for c in lines[start].split("┃")[1:-1]]
    body = []
    for ln in lines[start + 1 :]:
        if ln.startswith("└"):
            break
        if ln.startswith("│"):
            body.append([c.strip() for c in ln.split("│")[1:-1]])
    return {row[0]: float(row[names.index(column)]) for row in body}


def test_demo_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo trains popularity, EASE and SASRec on the synthetic world, and the order the
    README promises holds on test NDCG@10 with margins: SASRec ≥ EASE + 0.05, EASE ≥ popularity
    + 0.1 (here about 0.60 / 0.41 / 0.03). A demo whose SASRec learns nothing (or is trained on
    the wrong split, or ranks seen items), an EASE that ranks by popularity, or a table with the
    rows mislabelled fails.

    The demo recipe stops SASRec on a wall-clock budget, which made this order depend on the
    machine's load (a 3-second budget gave 0.51 idle and 0.22 on 2 busy cores). Here the recipe
    stops after 10 epochs instead (about 7 s of training on 2 cores, 0.60) and the budget is
    out of the way, so the figures are the same however busy the machine is."""
    from playnext import recipes

    shipped = recipes.load

    def ten_epochs(name: str | Path) -> recipes.Recipe:
        recipe = shipped(name)
        if str(name) != "demo":
            return recipe
        return dataclasses.replace(recipe, params={**recipe.params, "epochs": 10, "max_minutes": 30.0})

    monkeypatch.setattr(recipes, "load", ten_epochs)
    out = tmp_path / "demo"
    r = runner.invoke(app, ["demo", "--out", str(out), "--n-users", "400", "--minutes", "30"])
    assert r.exit_code == 0, r.output
    assert "NDCG@10" in r.stdout and "sasrec recommends" in r.stdout
    ndcg = _table_column(r.stdout, "NDCG@10")
    assert set(ndcg) == {"popular", "ease", "sasrec"}, r.stdout
    assert ndcg["sasrec"] >= ndcg["ease"] + 0.05, ndcg
    assert ndcg["ease"] >= ndcg["popular"] + 0.1, ndcg
    saved = json.loads((out / "artifact.json").read_text())  # the saved model is the SASRec row
    assert saved["model"] == "sasrec" and saved["epochs"] == 10 and saved["stopped"] == "epochs"
    assert saved["metrics"]["NDCG@10"] == pytest.approx(ndcg["sasrec"], abs=1e-4)


@pytest.mark.slow
def test_train_refit_is_recorded_in_the_protocol(seq_file: Path) -> None:
    base = ["train", "--model", "popular", "--dataset", "seq", "--path", str(seq_file), "--json"]
    plain = _json(runner.invoke(app, base).stdout)
    refit = _json(runner.invoke(app, [*base, "--refit"]).stdout)
    assert "refit" not in plain["protocol"] and "no refit" in plain["protocol"]["test_history"]
    assert "refit" in refit["protocol"] and "was refit" in refit["protocol"]["test_history"]
    # popularity counted each user's validation event too, so the test ranking moved
    assert refit["metrics"] != plain["metrics"]


def test_train_repeats_reports_repeat_and_new_targets_apart() -> None:
    """`--repeats` end to end on a small synthetic world with planted re-listens: the record names
    the protocol, seen items are candidates, and each target group has its numbers and size."""
    world = ["--dataset", "synthetic", "-o", "n_users=300", "-o", "n_items=300", "-o", "relisten_rate=0.3"]
    base = ["train", "--model", "recency", *world, "--json"]
    r = runner.invoke(app, [*base, "--repeats"])
    assert r.exit_code == 0, r.output
    rec = _json(r.stdout)
    groups = rec["n_users_by_target"]
    assert groups["repeat"] > 0 and groups["new"] > 0
    assert groups["repeat"] + groups["new"] == rec["n_users_evaluated"]
    assert "repeats" in rec["protocol"] and rec["protocol"]["exclude_seen"] is False
    m = rec["metrics"]
    assert {"repeat/NDCG@10", "new/NDCG@10", "repeat/HR@10", "new/MRR"} <= set(m)
    assert m["repeat/NDCG@10"] > m["new/NDCG@10"]  # a repeat baseline, judged where repeats count
    plain = _json(runner.invoke(app, base).stdout)  # the default protocol: masked, no groups
    assert "n_users_by_target" not in plain and plain["protocol"]["exclude_seen"] is True
    assert not any("/" in k for k in plain["metrics"]) and plain["metrics"]["NDCG@10"] < m["NDCG@10"]
    table = runner.invoke(app, [*base[:-1], "--repeats"])
    assert table.exit_code == 0
    assert f"repeat ({groups['repeat']})" in table.output and f"new ({groups['new']})" in table.output


def test_train_nproc_2_prints_one_record(tmp_path: Path) -> None:
    """`--nproc 2` relaunches under torch.distributed; rank 0 alone prints the JSON record."""
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "playnext.cli",
        "train",
        "--model",
        "sasrec",
        "--dataset",
        "synthetic",
        "--option",
        "n_users=120",
        "--option",
        "n_items=80",
        "--param",
        "epochs=1",
        "--param",
        "max_len=10",
        "--param",
        "verbose=false",
        "--nproc",
        "2",
        "--refit",
        "--json",
        "--out",
        str(tmp_path / "m"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    # a failing rank prints its cause first; the launcher's traceback comes last
    assert done.returncode == 0, done.stderr[:4000] + "\n…\n" + done.stderr[-1500:]
    record = _json(done.stdout)
    assert record["world_size"] == 2 and record["model"] == "sasrec"
    assert "refit" in record["protocol"]  # the option reached every rank's select_and_test
    assert (tmp_path / "m" / "weights.safetensors").exists()


def test_train_cold_ranks_held_out_items_every_way(tmp_path: Path) -> None:
    """`--cold` end to end: the model trains without the held-out items and the record ranks
    each user's first one by the content tower, neighbour borrowing, id-only and popularity."""
    world = ["--dataset", "synthetic", "-o", "n_users=300", "-o", "n_items=200"]
    params = ["epochs=4", "dim=16", "max_len=20", "item_features=genres,year", "text_encoder=hashing"]
    args = ["train", "--model", "sasrec", *world, *(a for p in params for a in ("--param", p))]
    r = runner.invoke(app, [*args, "--budget-minutes", "0", "--cold", "random:0.2", "--json"])
    assert r.exit_code == 0, r.output
    rec = _json(r.stdout)
    cold = rec["cold"]
    assert cold["protocol"]["cold_items"] == 40 and rec["n_items"] == 160
    s = cold["scorers"]
    assert set(s) == {"content", "borrowing", "content+live", "borrowing+live", "id-only", "cold-popularity"}
    q = cold["questions"]  # live weights chosen on one half of the questions, reported on the other
    assert s["content"]["questions"] == q["test"] and abs(q["test"] - q["valid"]) <= 1
    w = cold["live_weights"]["content"]
    assert w["chosen"] in {float(k) for k in w["valid/cold/NDCG@10"]}
    assert s["id-only"]["all/HR@10"] == 0.0 and s["content"]["all/HR@10"] > 0.0
    assert s["content"]["cold/HR@10"] > s["id-only"]["cold/HR@10"]
    assert "all/HR@10" not in s["cold-popularity"]
    # the saved model is the one trained: its catalog is the warm one, and it serves
    saved = runner.invoke(
        app, [*args, "--budget-minutes", "0", "--cold", "random:0.2", "--out", str(tmp_path / "m")]
    )
    assert saved.exit_code == 0, saved.output
    art = Artifact.load(tmp_path / "m")
    assert len(art.items) == 160 and art.recommend(user=art.users.external[0], k=3)
    bad = runner.invoke(app, [*args, "--cold", "oldest:2"])
    assert bad.exit_code == 2 and "BY[:FRACTION]" in bad.output
