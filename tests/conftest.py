"""Shared fixtures: the real-data folder (skips cleanly when PLAYNEXT_DATA_DIR is unset)."""

from __future__ import annotations

import os
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


def _postgres_server() -> str:
    """A PostgreSQL server URL: PLAYNEXT_TEST_POSTGRES, else one started by .ci/postgres.sh in a
    fixed temporary folder (reused by later runs; the `postgres` user must be able to enter it)."""
    import subprocess
    import tempfile

    url = os.environ.get("PLAYNEXT_TEST_POSTGRES")
    if url:
        return url
    if "url" in _PG:
        return _PG["url"]
    script = Path(__file__).resolve().parent.parent / ".ci" / "postgres.sh"
    folder = Path(tempfile.gettempdir()) / "playnext-test-pg"
    r = subprocess.run(["bash", str(script), str(folder)], capture_output=True, text=True)
    if r.returncode != 0:
        reason = (r.stderr.strip().splitlines() or ["no reason given"])[-1]
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests, but no server could be started: {reason}")
        pytest.skip(f"no PostgreSQL server could be started ({reason}); set PLAYNEXT_TEST_POSTGRES")
    _PG["url"] = r.stdout.strip().splitlines()[-1]
    return _PG["url"]


@pytest.fixture()
def pg_url() -> str:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards is not needed: unique name)."""
    import uuid

    import sqlalchemy as sa

    base = _postgres_server()
    name = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(
        base.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return base.rsplit("/", 1)[0] + "/" + name


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
