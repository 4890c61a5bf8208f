"""The CLI on data traps and rough edges: one line each naming what was found and the flag that
handles it, refusals that exit 2 and save nothing, readable help, and the install line for CUDA."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from playnext.cli import DATASET_OPTIONS, app

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def _log(rows: list[str], path: Path) -> Path:
    path.write_text("user,item,timestamp\n" + "\n".join(rows) + "\n")
    return path


def _walks(n_users: int = 40, length: int = 8, scale: int = 1) -> list[str]:
    """Each user walks the catalog in order, one event a minute (timestamps in seconds × scale)."""
    t0 = 1_600_000_000
    return [
        f"u{u},i{(u + j) % 25},{(t0 + 60 * (u * length + j)) * scale}"
        for u in range(n_users)
        for j in range(length)
    ]


def _json(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"stdout must be exactly one JSON object, got: {stdout!r}"
    doc: dict = json.loads(lines[0])
    return doc


def _train(path: Path, *extra: str) -> Result:
    return runner.invoke(app, ["train", "--model", "ease", "--dataset", "csv", "--path", str(path), *extra])


def test_every_row_twice_is_named_with_its_flags_and_dedupe_fixes_it(tmp_path: Path) -> None:
    rows = _walks()
    path = _log(rows + rows, tmp_path / "twice.csv")
    r = _train(path, "--json")
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    dup = [ln for ln in lines if "repeat an earlier row exactly" in ln]
    seen = [ln for ln in lines if "already in the user's history" in ln]
    assert len(dup) == 1 and "--dedupe" in dup[0]
    assert len(seen) == 1 and seen[0].startswith("warning: 100% of test targets") and "--repeats" in seen[0]
    record = _json(r.stdout)
    assert record["metrics"]["NDCG@10"] == 0.0  # the trap itself: every target already seen
    checks = {c["check"]: c for c in record["data_checks"]}
    assert (
        checks["duplicates"]["facts"]["rows"] == len(rows) and checks["seen_targets"]["flag"] == "--repeats"
    )
    fixed = _train(path, "--json", "--dedupe")
    assert fixed.exit_code == 0, fixed.output
    assert _json(fixed.stdout)["metrics"]["NDCG@10"] > 0.1
    assert not [c for c in _json(fixed.stdout)["data_checks"] if c["severity"] == "warning"]


def test_data_stats_prints_the_checks_and_records_them_in_json(tmp_path: Path) -> None:
    path = _log([*_walks(), "lonely,i1,1600000000"], tmp_path / "log.csv")
    r = runner.invoke(app, ["data", "stats", "--dataset", "csv", "--path", str(path)])
    assert r.exit_code == 0, r.output
    assert "1 of 41 users have fewer than 3 events" in r.stdout and "--k-core 3" in r.stdout
    assert "events from 2020-09-13" in r.stdout
    r = runner.invoke(
        app, ["data", "stats", "--dataset", "csv", "--path", str(path), "--json", "--k-core", "3"]
    )
    assert r.exit_code == 0, r.output
    stats = _json(r.stdout)
    assert stats["users"] == 40
    assert [c["check"] for c in stats["data_checks"]] == ["k_core", "time_range"]


def test_millisecond_timestamps_are_converted_and_said_once(tmp_path: Path) -> None:
    path = _log(_walks(scale=1000), tmp_path / "ms.csv")
    r = _train(path, "--json")
    assert r.exit_code == 0, r.output
    assert r.stderr.count("timestamps are in milliseconds") == 1
    assert "converted to seconds" in r.stderr
    checks = {c["check"]: c for c in _json(r.stdout)["data_checks"]}
    assert checks["time_unit"]["facts"] == {"unit": "milliseconds", "per_second": 1000}
    assert checks["time_range"]["facts"]["last"] == 1_600_000_000 + 60 * (40 * 8 - 1)  # in seconds
    assert checks["time_range"]["message"].startswith("events from 2020-09-13 12:26 to 2020-09-13 17:45")


def test_a_one_item_catalog_is_refused_and_nothing_is_saved(tmp_path: Path) -> None:
    path = _log([f"u{u},only,{1600000000 + j}" for u in range(5) for j in range(4)], tmp_path / "one.csv")
    out = tmp_path / "model"
    r = _train(path, "--out", str(out))
    assert r.exit_code == 2, r.output
    assert "the catalog has 1 item: a ranking needs at least 2" in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("error:")]) == 1
    assert not out.exists()


def test_a_semicolon_file_suggests_the_separator_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("user;item;timestamp\n" + "\n".join(r.replace(",", ";") for r in _walks()) + "\n")
    r = runner.invoke(app, ["data", "stats", "--dataset", "csv", "--path", str(path)])
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and "--option separator=';'" in r.stderr
    ok = runner.invoke(
        app, ["data", "stats", "--dataset", "csv", "--path", str(path), "--option", "separator=;"]
    )
    assert ok.exit_code == 0, ok.output


def test_items_file_on_the_command_line_gives_titles_to_recommendations(tmp_path: Path) -> None:
    path = _log(_walks(), tmp_path / "log.csv")
    items = tmp_path / "items.csv"
    items.write_text(
        "id,title,genres,year\n" + "".join(f"i{i},Song {i},rock|pop,{1990 + i}\n" for i in range(25))
    )
    out = tmp_path / "model"
    r = _train(path, "--items", str(items), "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    rec = runner.invoke(app, ["recommend", "--model-dir", str(out), "--user", "u3", "--k", "3", "--json"])
    assert rec.exit_code == 0, rec.output
    picks = _json(rec.stdout)["items"]
    assert all(p["title"] == f"Song {p['item_id'][1:]}" and p["genres"] == ["rock", "pop"] for p in picks)


def test_model_names_are_case_insensitive(tmp_path: Path) -> None:
    from playnext.models.registry import canonical, get

    assert canonical("SASRec") == "sasrec" and get("EASE") is get("ease")
    path = _log(_walks(), tmp_path / "log.csv")
    r = runner.invoke(app, ["train", "--model", "EASE", "--dataset", "csv", "--path", str(path), "--json"])
    assert r.exit_code == 0, r.output
    assert _json(r.stdout)["model"] == "ease"
    from playnext import recipes

    assert recipes.default_for("SASRec").name == "sasrec"  # the default recipe, not bare defaults


def test_device_cuda_without_a_cuda_build_is_one_line_naming_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    path = _log(_walks(), tmp_path / "log.csv")
    out = tmp_path / "model"
    args = ["train", "--model", "SASRec", "--dataset", "csv", "--path", str(path), "--param", "device=cuda"]
    r = runner.invoke(app, [*args, "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.output
    assert "CPU-only build" in r.stderr
    assert "pip install torch==" in r.stderr and "--index-url https://download.pytorch.org/whl/cu" in r.stderr
    assert not out.exists()


def test_help_is_readable_at_80_columns() -> None:
    for command in (["train"], ["data", "stats"], ["serve"], ["retrain"], ["recommend"]):
        r = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
        assert r.exit_code == 0, r.output
        assert max(len(line) for line in r.stdout.splitlines()) <= 80, r.stdout
        assert "…" not in "".join(line.split("  ")[0] for line in r.stdout.splitlines())  # no cut names
    text = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "80"}).stdout
    for name in ("--budget-minutes", "--no-exclude-seen", "--dedupe", "--k-core", "--items", "--option"):
        assert name in text


def test_every_dataset_option_is_listed_in_help_and_readme() -> None:
    from playnext.data.readers import READERS, load_dataset
    from playnext.data.synthetic import generate_world

    options = {p for fn in READERS.values() for p in list(inspect.signature(fn).parameters)[2:]}
    options |= set(inspect.signature(generate_world).parameters)
    options |= {p for p in inspect.signature(load_dataset).parameters if p not in ("name", "path", "options")}
    options -= {"download"}  # set by the CLI itself: --path or not
    help_text = " ".join(
        runner.invoke(app, ["data", "stats", "--help"], env={"COLUMNS": "200"}).stdout.split()
    )
    readme = (ROOT / "docs" / "cli.md").read_text()  # the README links the options table there
    for option in sorted(options):
        assert option in DATASET_OPTIONS, f"{option} is missing from --option's help"
        assert option in help_text, f"{option} is missing from `data stats --help`"
        assert f"`{option}`" in readme, f"{option} is missing from docs/cli.md's dataset options"


def test_the_cli_lets_idle_openmp_threads_sleep(tmp_path: Path) -> None:
    """OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP (libgomp shows it as a spin count of 0),
    unless the caller set it."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"
    cli = [sys.executable, "-m", "playnext.cli", "models"]
    r = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    if "GOMP_SPINCOUNT" not in r.stderr:
        pytest.skip("this torch's OpenMP is not libgomp: nothing to read the policy from")
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in r.stderr and "GOMP_SPINCOUNT = '0'" in r.stderr
    r = subprocess.run(
        cli, env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True, text=True, timeout=120
    )
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in r.stderr  # the caller's choice stands
    lib = subprocess.run([sys.executable, "-c", "import playnext"], env=env, capture_output=True, text=True)
    assert "GOMP_SPINCOUNT = '0'" not in lib.stderr  # a notebook keeps OpenMP's default
