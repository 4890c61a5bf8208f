"""Shared fixtures: the real-data folder (skips cleanly when PLAYNEXT_DATA_DIR is unset), fresh
PostgreSQL databases (dropped after each test; a server the session started is stopped at its end)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = os.environ.get("PLAYNEXT_DATA_DIR")
    if not root:
        pytest.skip("PLAYNEXT_DATA_DIR not set: real-data test skipped")
    path = Path(root)
    if not path.is_dir():
        pytest.skip(f"PLAYNEXT_DATA_DIR={root} is not a folder")
    return path


_PG: dict[str, str] = {}
_PG_SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "postgres.sh"


def _postgres_server() -> str:
    """A PostgreSQL server URL: PLAYNEXT_TEST_POSTGRES, else a server of this session's own, started
    by .ci/postgres.sh in a fresh temporary folder on a free port (`pytest_sessionfinish` stops it
    and removes the folder, so a run leaves no server and no cluster behind)."""
    import socket
    import subprocess
    import tempfile

    url = os.environ.get("PLAYNEXT_TEST_POSTGRES")
    if url:
        return url
    if "url" in _PG:
        return _PG["url"]
    folder = tempfile.mkdtemp(prefix="playnext-test-pg.")
    os.chmod(folder, 0o755)  # the `postgres` user, when we are root, must be able to enter it
    _PG["dir"] = folder
    port = os.environ.get("PLAYNEXT_PG_PORT")
    if not port:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = str(s.getsockname()[1])
    env = {**os.environ, "PLAYNEXT_PG_PORT": port}
    r = subprocess.run(["bash", str(_PG_SCRIPT), folder], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        _stop_postgres()
        reason = (r.stderr.strip().splitlines() or ["no reason given"])[-1]
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests, but no server could be started: {reason}")
        pytest.skip(f"no PostgreSQL server could be started ({reason}); set PLAYNEXT_TEST_POSTGRES")
    _PG["url"] = r.stdout.strip().splitlines()[-1]
    return _PG["url"]


def _stop_postgres() -> None:
    """Stop the server this session started, if it started one, and remove its folder."""
    import subprocess

    folder = _PG.pop("dir", None)
    _PG.pop("url", None)
    if folder is not None:
        subprocess.run(["bash", str(_PG_SCRIPT), "--stop", folder], capture_output=True, check=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _stop_postgres()  # never one given by PLAYNEXT_TEST_POSTGRES: that one is the caller's


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards (its connections too)."""
    import uuid

    import sqlalchemy as sa

    base = _postgres_server()
    name = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(
        base.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        yield base.rsplit("/", 1)[0] + "/" + name
        with admin.connect() as conn:  # FORCE: a store the test left open is disconnected first
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a state store lives: a fresh SQLite folder or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "state")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(scope="session")
def typed_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SASRec trained with typed events (actions, positive targets) on the synthetic
    world's like / skip / watch log, saved as a model folder (event types and typed histories)."""
    from playnext.artifact import Artifact
    from playnext.data.synthetic import generate_world
    from playnext.models.sasrec import SASRec, SASRecConfig

    world = generate_world(n_users=150, n_items=300, seed=0, typed_events=True)
    cfg = SASRecConfig(dim=16, max_len=20, epochs=1, actions=True, targets="positive", verbose=False)
    model = SASRec(cfg).fit(world)
    folder = tmp_path_factory.mktemp("typed") / "model"
    info = {"dataset": "synthetic", "model": "sasrec", "params": cfg.to_dict()}
    return Artifact.from_data(model, world, info).save(folder)
