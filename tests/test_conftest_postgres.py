"""The suite stops what it starts and drops what it creates: a PostgreSQL server the session
started is stopped at its end (its folder removed), one given by PLAYNEXT_TEST_POSTGRES is left
running, and every test database is dropped at teardown. Each case runs a small pytest session
of its own on tests/conftest.py and looks at what it left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parent / "conftest.py"
INNER_CONFTEST = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("playnext_suite_conftest", {str(CONFTEST)!r})
mod = importlib.util.module_from_spec(spec)
sys.modules["playnext_suite_conftest"] = mod
spec.loader.exec_module(mod)
pg_url = mod.pg_url
pytest_sessionfinish = mod.pytest_sessionfinish
"""
INNER_TEST = """
import json, os, sys

def test_uses_a_database(pg_url):
    import sqlalchemy as sa
    eng = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with eng.connect() as conn:  # left open on purpose: teardown must still drop the database
        conn.execute(sa.text("CREATE TABLE t (x int)"))
        conn.commit()
    state = sys.modules["playnext_suite_conftest"]._PG
    with open(os.environ["REPORT"], "w") as f:
        json.dump({"url": pg_url, "dir": state.get("dir")}, f)
"""


def _inner_session(tmp_path: Path, given: str | None) -> dict[str, str | None]:
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    env = {k: v for k, v in os.environ.items() if k not in ("PLAYNEXT_TEST_POSTGRES", "PLAYNEXT_PG_PORT")}
    env["REPORT"] = str(tmp_path / "report.json")
    if given is not None:
        env["PLAYNEXT_TEST_POSTGRES"] = given
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if "no PostgreSQL server could be started" in r.stdout:
        pytest.skip("no PostgreSQL server binaries here")
    assert r.returncode == 0, r.stdout + r.stderr
    report: dict[str, str | None] = json.loads((tmp_path / "report.json").read_text())
    return report


def _databases(server_url: str) -> set[str]:
    import sqlalchemy as sa

    eng = sa.create_engine(server_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with eng.connect() as conn:
            return {row[0] for row in conn.execute(sa.text("SELECT datname FROM pg_database"))}
    finally:
        eng.dispose()


def test_a_server_the_session_started_is_stopped_and_removed(tmp_path: Path) -> None:
    report = _inner_session(tmp_path, given=None)
    folder = report["dir"]
    assert folder is not None, "the session should have started a server of its own"
    assert not Path(folder).exists(), "the server's folder is still there"
    import sqlalchemy as sa

    with pytest.raises(sa.exc.OperationalError):  # nothing listens there any more
        _databases(str(report["url"]).rsplit("/", 1)[0] + "/postgres")


def test_each_test_database_is_dropped_and_a_given_server_keeps_running(tmp_path: Path, pg_url: str) -> None:
    server = pg_url.rsplit("/", 1)[0] + "/postgres"  # the outer session's server, given to the inner
    report = _inner_session(tmp_path, given=pg_url)
    assert report["dir"] is None, "a given server must not be replaced by one of the session's own"
    name = str(report["url"]).rsplit("/", 1)[1]
    assert name not in _databases(server), f"test database {name} was left behind"
