"""/health says 503, with the reason, whenever the state store is unusable under a live server.

It used to say ok with the disk full, a corrupted state file or a foreign schema while every
write or session call answered 503 (issue #30, fault 7). Now it probes the store (the file is
the one opened and starts as SQLite, room on the disk, the exact schema, a read, a rolled-back
write) and answers 503 naming the reason; an unauthenticated client never sees a file path.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from playnext.data.interactions import Interactions

TOKEN = "fault-token"  # tests/faults/conftest.py's


def _items(world: Interactions, n: int = 20) -> list[str]:
    return [str(i) for i in world.items.external.to_list()[:n]]


def _health(server: Any, **kw: Any) -> tuple[int, dict[str, Any]]:
    r = server.get("/health", **kw)
    return r.status_code, r.json()


def _no_path(body: Any, tmp_path: Path) -> None:
    text = str(body)
    assert str(tmp_path) not in text and "/state.db" not in text.replace("…/state.db", ""), text


def test_a_locked_store(
    serve: Callable[..., Any], model_dirs: dict[str, Path], fault_world: Interactions, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    server = serve("--model-dir", model_dirs["ease"], "--state", state)
    holder = sqlite3.connect(state / "state.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
    try:
        t0 = time.monotonic()
        code, body = _health(server)
        assert code == 503 and "locked" in body["status"], body
        assert time.monotonic() - t0 < 5  # the probe waits about a second, not the 10 s busy timeout
        _no_path(body, tmp_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _health(server)[0] == 200


def test_a_state_file_overwritten_in_place(
    serve: Callable[..., Any], model_dirs: dict[str, Path], fault_world: Interactions, tmp_path: Path
) -> None:
    """The header overwritten (same inode): WAL-mode writes never read it, so they went on being
    acknowledged, and the restart refused the file ("file is not a database") with them in it."""
    state = tmp_path / "state"
    items = _items(fault_world)
    server = serve("--model-dir", model_dirs["ease"], "--state", state)
    for i, item in enumerate(items[:5]):
        assert server.post(f"/sessions/s{i}/events", json={"events": [{"item_id": item}]}).status_code == 200
    with open(state / "state.db", "r+b") as f:
        f.write(os.urandom(100))
    writes = Counter(
        server.post(f"/sessions/t{i}/events", json={"events": [{"item_id": item}]}).status_code
        for i, item in enumerate(items)
    )
    assert writes == {503: len(items)}, writes
    code, body = _health(server)
    assert code == 503 and "header" in body["status"], body
    _no_path(body, tmp_path)
    code, authed = _health(server, headers={"Authorization": f"Bearer {TOKEN}"})
    assert code == 503 and str(state) in authed["store"]  # the operator sees where


def test_a_foreign_schema_under_a_running_server(
    serve: Callable[..., Any], model_dirs: dict[str, Path], fault_world: Interactions, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    items = _items(fault_world)
    server = serve("--model-dir", model_dirs["ease"], "--state", state)
    assert server.post("/sessions/a/events", json={"events": [{"item_id": items[0]}]}).status_code == 200
    with sqlite3.connect(state / "state.db") as con:  # another program's table under playnext's name
        con.executescript(
            "ALTER TABLE playnext_sessions RENAME TO old_sessions;"
            "CREATE TABLE playnext_sessions (session_id TEXT PRIMARY KEY, payload BLOB);"
        )
    con.close()
    r = server.post("/sessions/b/events", json={"events": [{"item_id": items[1]}]})
    assert r.status_code == 503, r.text
    code, body = _health(server)
    assert code == 503 and "playnext_sessions has columns" in body["status"], body
    _no_path(body, tmp_path)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE playnext_meta SET value = '7' WHERE key = 'schema_version'",
        "ALTER TABLE playnext_events ADD COLUMN extra BLOB",
    ],
    ids=["version", "column"],
)
def test_a_foreign_schema_refuses_event_writes_as_health_does(
    serve: Callable[..., Any],
    model_dirs: dict[str, Path],
    fault_world: Interactions,
    tmp_path: Path,
    sql: str,
) -> None:
    """The sessions table intact, the schema foreign elsewhere: /health said 503 while event
    writes went on being acknowledged (issue #30). Now every write is a 503 too, and the file
    holds exactly the events acknowledged before."""
    state = tmp_path / "state"
    items = _items(fault_world)
    server = serve("--model-dir", model_dirs["ease"], "--state", state)
    assert server.post("/sessions/a/events", json={"events": [{"item_id": items[0]}]}).status_code == 200
    with sqlite3.connect(state / "state.db") as con:
        con.execute(sql)
    con.close()
    writes = Counter(
        server.post(f"/sessions/{s}/events", json={"events": [{"item_id": items[1]}]}).status_code
        for s in ("a", "b", "c")
    )
    assert writes == {503: 3}, writes
    code, body = _health(server)
    assert code == 503 and "refused" in body["status"], body
    con = sqlite3.connect(state / "state.db")
    try:
        rows = con.execute("SELECT session_id, item_id FROM playnext_events ORDER BY seq").fetchall()
    finally:
        con.close()
    assert rows == [("a", items[0])]


def _mount_namespace() -> list[str] | None:
    """A command prefix that runs a process in its own mount namespace (root, or an unprivileged
    user namespace), where it may mount a small tmpfs; None where neither is allowed."""
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):
        try:
            r = subprocess.run(
                [*prefix, "sh", "-c", 'd=$(mktemp -d) && mount -t tmpfs -o size=1m t "$d" && umount "$d"'],
                capture_output=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if r.returncode == 0:
            return prefix
    return None


def test_a_full_disk(model_dirs: dict[str, Path], fault_world: Interactions, tmp_path: Path) -> None:
    """The state folder on a 2 MB tmpfs, written until it is full: every write is a 200 that
    stays, or a 503; /health turns 503 naming the full disk."""
    prefix = _mount_namespace()
    if prefix is None:
        pytest.skip("mounting a small tmpfs needs root or unprivileged user namespaces (unshare -rm)")
    state = tmp_path / "state"
    state.mkdir()
    port = _free_port()
    env = {
        **os.environ,
        "PLAYNEXT_TEXT_ENCODER": "hashing",
        "PLAYNEXT_CACHE_DIR": str(tmp_path / "cache"),
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    cmd = [*prefix, "sh", "-c", 'mount -t tmpfs -o size=2m playnext-full "$0" && exec "$@"', str(state)]
    cmd += [sys.executable, "-m", "playnext.cli", "serve", "--model-dir", str(model_dirs["ease"])]
    cmd += ["--state", str(state), "--port", str(port)]
    log = tmp_path / "serve.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log)
        items = _items(fault_world, 100)
        events = [{"item_id": i, "event": "play", "value": 0.5} for i in items]
        acked: list[str] = []
        codes: Counter[int] = Counter()
        deadline = time.monotonic() + 40  # a bound: a 2 MB store fills in about 13 s on 2 shared cores
        while codes[503] < 5 and time.monotonic() < deadline:
            sid = f"s{sum(codes.values())}"
            code = httpx.post(f"{url}/sessions/{sid}/events", json={"events": events}, timeout=30).status_code
            codes[code] += 1
            if code == 200:
                acked.append(sid)
        assert set(codes) == {200, 503} and len(acked) > 10, codes
        r = httpx.get(f"{url}/health", timeout=10)
        assert r.status_code == 503 and "full" in r.json()["status"], r.text
        _no_path(r.json(), tmp_path)
        # everything acknowledged is in the file: a copy of it and its WAL, taken through the
        # server's mount namespace (SQLite itself would resolve /proc/PID/root to our own root)
        seen = Path(f"/proc/{proc.pid}/root") / str(state).lstrip("/")
        copy = tmp_path / "copy"
        copy.mkdir()
        for name in ("state.db", "state.db-wal"):
            (copy / name).write_bytes((seen / name).read_bytes())
        con = sqlite3.connect(copy / "state.db")
        logged = {s for (s,) in con.execute("SELECT DISTINCT session_id FROM playnext_events")}
        con.close()
        assert set(acked) <= logged
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            shown = log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"server exited {proc.returncode}:\n{shown}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server not ready:\n{log.read_text(errors='replace')[-3000:]}")
