"""`playnext serve --workers N` as a user runs it: real processes sharing one state store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from playnext.artifact import Artifact
from playnext.data.interactions import Interactions


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "playnext.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PLAYNEXT_TEXT_ENCODER": "hashing"},
    )


@pytest.mark.slow
def test_a_session_written_through_one_worker_is_read_by_the_others(
    artifact: Artifact, world: Interactions, tmp_path: Path
) -> None:
    model = artifact.save(tmp_path / "model")
    port = _free_port()
    env = {**os.environ, "PLAYNEXT_TEXT_ENCODER": "hashing", "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, "-m", "playnext.cli", "serve", "--model-dir", str(model), "--workers", "2"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        up: set[int] = set()  # both workers answer before the test starts (they start seconds apart)
        while time.monotonic() < deadline and len(up) < 2:
            try:
                r = httpx.get(url + "/health", timeout=2)
                if r.status_code == 200:
                    up.add(r.json()["pid"])
            except httpx.HTTPError:
                time.sleep(0.3)
        items = world.items.external.to_list()
        pids = set()
        for i in range(30):
            # a new connection each time: the kernel spreads them over the workers
            r = httpx.post(url + "/sessions/shared/events", json={"events": [{"item_id": items[i]}]})
            assert r.status_code == 200
            got = httpx.get(url + "/sessions/shared").json()
            assert got["events"][-1]["item_id"] == items[i] and got["length"] == i + 1
            pids.add(httpx.get(url + "/health").json()["pid"])
        assert len(pids) == 2, "both workers should have answered"
        assert (model.parent / "state" / "model" / "state.db").is_file()  # the default: the model's own
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_serve_refuses_an_unreachable_store_with_exit_2(artifact: Artifact, tmp_path: Path) -> None:
    model = artifact.save(tmp_path / "model")
    r = _cli("serve", "--model-dir", str(model), "--store", "postgresql://nobody:pw@127.0.0.1:1/none")
    assert r.returncode == 2, r.stderr
    assert "127.0.0.1" in r.stderr and "pw" not in r.stderr and "Traceback" not in r.stderr


def test_serve_refuses_a_corrupt_state_file_and_keeps_it(artifact: Artifact, tmp_path: Path) -> None:
    model = artifact.save(tmp_path / "model")
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.db").write_bytes(b"garbage" * 500)
    r = _cli("serve", "--model-dir", str(model), "--state", str(state))
    assert r.returncode == 2 and "not a database" in r.stderr
    assert (state / "state.db").read_bytes() == b"garbage" * 500


def test_serve_refuses_a_broken_model_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.json").write_text("{}")
    r = _cli("serve", "--model-dir", str(bad), "--workers", "2")
    assert r.returncode == 2 and "bad" in r.stderr and "Traceback" not in r.stderr
    r = _cli("serve", "--model-root", str(tmp_path / "empty-root"))
    assert r.returncode == 2 and "current" in r.stderr
