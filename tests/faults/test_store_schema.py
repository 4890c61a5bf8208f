"""`playnext serve` refuses a store that is not exactly playnext's, or another model's: one line,
exit 2, the store untouched.

A `schema_version` of "abc" gave an 86-line traceback and exit 1; a store with playnext's table
names but other columns was accepted, stamped, and then answered 503 to every session call
(issue #30, fault 8); a model trained on one catalog and another beside it shared `state/`, so a
session of one was replayed as ids of the other (fault 9).
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from playnext.artifact import Artifact
from playnext.data.interactions import Interactions
from playnext.data.synthetic import generate_world
from playnext.models.popular import Popular, PopularConfig
from playnext.serve.engine import catalog_print
from playnext.state import NewEvent, StateStore


def _serve(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PLAYNEXT_TEXT_ENCODER": "hashing", "PLAYNEXT_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "playnext.cli", "serve", *map(str, args), "--port", str(port)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)


def _refused(r: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2 and one line saying why; the start-up progress lines (`INFO: serve: … in N s`)
    before it are not part of the refusal."""
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("INFO:")]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and all(w in lines[0] for w in words), lines


def _dump(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return list(con.iterdump())
    finally:
        con.close()


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        (
            "CREATE TABLE playnext_meta (key VARCHAR(200) PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO playnext_meta VALUES ('schema_version', 'abc');",
            ["schema_version 'abc'", "not a playnext schema version"],
        ),
        (
            "CREATE TABLE playnext_sessions (session_id TEXT PRIMARY KEY, owner TEXT, data BLOB);",
            ["playnext_sessions has columns", "not playnext's"],
        ),
    ],
    ids=["version-abc", "other-columns"],
)
def test_a_foreign_store_is_one_line_and_exit_2(
    model_dirs: dict[str, Path], tmp_path: Path, sql: str, words: list[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(state / "state.db") as con:
        con.executescript(sql)
    con.close()
    before = _dump(state / "state.db")
    _refused(_serve(tmp_path, "--model-dir", model_dirs["ease"], "--state", state), *words)
    assert _dump(state / "state.db") == before  # nothing created, nothing stamped


def test_another_models_catalog_is_refused(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = StateStore.open(state)  # what serving the EASE model first records
    store.bind_catalog(catalog_print(model_dirs["ease"]))
    store.close()
    other_world = generate_world(n_users=60, n_items=120, seed=7)
    other = Artifact.from_data(
        Popular(PopularConfig()).fit(other_world), other_world, {"model": "popular", "dataset": "other"}
    ).save(tmp_path / "other" / "model")
    _refused(
        _serve(tmp_path, "--model-dir", other, "--state", state),
        "belongs to another catalog",
        "'other'",
        "--state",
    )


def _other_model(folder: Path) -> Path:
    world = generate_world(n_users=60, n_items=120, seed=7)
    model = Popular(PopularConfig()).fit(world)
    return Artifact.from_data(model, world, {"model": "popular", "dataset": "other"}).save(folder)


def test_models_side_by_side_each_get_their_own_default_store(
    serve: Callable[..., Any], model_dirs: dict[str, Path], fault_world: Interactions, tmp_path: Path
) -> None:
    """Two models in one folder shared `models/state/` when no --state was given, so the second
    was refused (or, before stores recorded their catalog, read the first one's sessions as its
    own ids; issue #30, fault 9). Each now has `models/state/<name>/`."""
    models = tmp_path / "models"
    plays = Path(shutil.copytree(model_dirs["ease"], models / "plays"))
    other = _other_model(models / "other")
    first = serve("--model-dir", plays)
    item = str(fault_world.items.external[0])
    assert first.post("/sessions/s/events", json={"events": [{"item_id": item}]}).status_code == 200
    first.stop()
    second = serve("--model-dir", other)  # exit 2 'belongs to another catalog' before
    assert second.get("/sessions/s").status_code == 404  # none of the first model's sessions
    second.stop()
    assert {p.parent.name for p in (models / "state").glob("*/state.db")} == {"plays", "other"}
    again = serve("--model-dir", plays)
    assert again.get("/sessions/s").json()["events"][0]["item_id"] == item


def test_the_earlier_shared_default_is_kept_for_its_own_catalog(
    serve: Callable[..., Any], model_dirs: dict[str, Path], fault_world: Interactions, tmp_path: Path
) -> None:
    """A store in the earlier default place (`models/state/`) stays the store of the model whose
    catalog it records, so upgrading hides no session; another model gets its own."""
    models = tmp_path / "models"
    plays = Path(shutil.copytree(model_dirs["ease"], models / "plays"))
    shared = StateStore.open(models / "state")
    shared.bind_catalog(catalog_print(plays))
    shared.append("kept", [NewEvent(str(fault_world.items.external[0]))])
    shared.close()
    server = serve("--model-dir", plays)
    assert server.get("/sessions/kept").status_code == 200
    server.stop()
    other = serve("--model-dir", _other_model(models / "other"))
    assert other.get("/sessions/kept").status_code == 404
    assert (models / "state" / "other" / "state.db").is_file() and not (models / "state" / "plays").exists()
