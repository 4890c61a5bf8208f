"""A state store damaged or locked under a live server: /health 503 with the reason, writes 503,
and what was acknowledged survives a restart or the loss is reported.

Bytes of a committed frame of `state.db-wal` changed on disk went unnoticed (issue #30): a
running SQLite reads live frames through its shared index and never re-checks them, so /health
said ok and 300 writes were acknowledged — and the first start after a crash treats the damaged
frame as the log's end, dropping it and every commit after it without an error. Now every write
(under the write lock) and /health check the committed log's checksum chain; a page of the main
file damaged is found by SQLite's errors or by a `PRAGMA quick_check` /health runs when due.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from playnext.data.interactions import Interactions
from playnext.state import StateStore
from playnext.state.wal import FRAME_HEADER, WAL_HEADER, shared_index

PAGE = 4096


def _items(world: Interactions, n: int = 20) -> list[str]:
    return [str(i) for i in world.items.external.to_list()[:n]]


def _writes(server: Any, prefix: str, items: list[str]) -> tuple[Counter[int], list[str]]:
    """One event write per item, each to its own session; the statuses and the sessions acknowledged."""
    codes: Counter[int] = Counter()
    acked: list[str] = []
    for i, item in enumerate(items):
        code = server.post(f"/sessions/{prefix}{i}/events", json={"events": [{"item_id": item}]}).status_code
        codes[code] += 1
        if code == 200:
            acked.append(f"{prefix}{i}")
    return codes, acked


def _logged(state: Path | str) -> set[str]:
    store = StateStore.open(state)
    try:
        return {e.session_id for e in store.events()}
    finally:
        store.close()


def test_a_damaged_frame_of_the_write_ahead_log(
    serve: Callable[..., Any], model_dirs: dict[str, Path], fault_world: Interactions, tmp_path: Path
) -> None:
    """A committed frame's bytes changed in state.db-wal: every later write is a 503, /health is
    503 naming the log, and a gentle stop (its last connection writes the log into the file)
    keeps every write acknowledged before; a copy taken while it runs holds them too."""
    state = tmp_path / "state"
    items = _items(fault_world)
    server = serve("--model-dir", model_dirs["ease"], "--state", state)
    codes, acked = _writes(server, "b", items)
    assert codes == {200: len(items)}, codes
    index = shared_index(state / "state.db")
    assert index is not None and index.frames > 2
    frame = index.frames - 2  # committed, holding some of the writes just acknowledged
    with open(state / "state.db-wal", "r+b") as f:
        f.seek(WAL_HEADER + (frame - 1) * (FRAME_HEADER + PAGE) + FRAME_HEADER + 100)
        f.write(os.urandom(16))
    codes, late = _writes(server, "a", items[:10])
    assert codes == {503: 10}, codes  # before the fix: 200, lost at the first start after a crash
    r = server.get("/health")
    assert r.status_code == 503 and "write-ahead log" in r.json()["status"], r.text
    assert f"frame {frame} of the {index.frames} committed" in r.json()["status"]
    assert str(tmp_path) not in r.text
    with sqlite3.connect(state / "state.db") as live, sqlite3.connect(tmp_path / "rescue.db") as rescue:
        live.backup(rescue)  # reads the log through the live shared index, as committed
    for con in (live, rescue):
        con.close()
    server.stop()  # SIGTERM
    assert set(acked) <= _logged(state) and not late
    assert set(acked) <= _logged(f"sqlite:///{tmp_path / 'rescue.db'}"), "the documented rescue copy"
    restarted = serve("--model-dir", model_dirs["ease"], "--state", state)
    assert restarted.get("/health").status_code == 200
    assert _writes(restarted, "c", items[:3])[0] == {200: 3}


def test_a_damaged_page_of_the_state_file(
    serve: Callable[..., Any], model_dirs: dict[str, Path], fault_world: Interactions, tmp_path: Path
) -> None:
    """An old page of the event log overwritten in state.db after a checkpoint: no write and no
    /health read touches it, so both went on answering 200; now /health turns 503 within the
    quick_check's interval, writes are 503 from then on, and a restarted server reports it."""
    state = tmp_path / "state"
    items = _items(fault_world, 100)
    server = serve("--model-dir", model_dirs["ease"], "--state", state)
    for s in range(4):  # several pages of events
        body = {"events": [{"item_id": i, "event": "play", "value": 0.5} for i in items]}
        assert server.post(f"/sessions/b{s}/events", json=body).status_code == 200
    with sqlite3.connect(state / "state.db", isolation_level=None) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        try:
            q = "SELECT pageno FROM dbstat WHERE name = 'playnext_events' AND pagetype = 'leaf'"
            q += " ORDER BY pageno"
            leaves = [p for (p,) in con.execute(q)]
        except sqlite3.OperationalError:
            leaves = []
    con.close()
    if len(leaves) < 2:
        pytest.skip("this SQLite has no dbstat table to find an old page of the event log")
    with open(state / "state.db", "r+b") as f:  # an old page of the log: no write or /health read touches it
        f.seek((leaves[0] - 1) * PAGE)
        f.write(b"\xff" + os.urandom(63))
    deadline = time.monotonic() + 15  # the quick_check runs at most every 5 s
    while (r := server.get("/health")).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert r.status_code == 503 and ("damaged" in r.text or "malformed" in r.text), r.text
    assert str(tmp_path) not in r.text
    codes, _ = _writes(server, "a", items[:5])
    assert codes == {503: 5}, codes
    server.stop()
    restarted = serve("--model-dir", model_dirs["ease"], "--state", state, ready=False)
    deadline = time.monotonic() + 60
    status: Any = None
    while time.monotonic() < deadline and restarted.alive():
        try:
            r = restarted.get("/health", timeout=5)
            status = (r.status_code, r.json().get("status"))
            if r.status_code == 503:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    # reported either way: a start-up refusal (exit 2, one line) or /health 503 naming the damage
    if restarted.alive():
        assert (
            status is not None and status[0] == 503 and ("damaged" in status[1] or "malformed" in status[1])
        ), status
    else:
        assert restarted.proc.returncode == 2 and "malformed" in restarted.log_text(), restarted.log_text()


def test_a_lock_held_by_another_process(
    serve: Callable[..., Any], model_dirs: dict[str, Path], fault_world: Interactions, tmp_path: Path
) -> None:
    """Another process holds SQLite's write lock past the 10 s busy timeout: /health 503 within
    about a second, writes 503 (never a 200 they could not commit), reads go on; once released
    everything acknowledged is there and writes are 200 again."""
    state = tmp_path / "state"
    items = _items(fault_world)
    server = serve("--model-dir", model_dirs["ease"], "--state", state)
    codes, acked = _writes(server, "b", items[:5])
    assert codes == {200: 5}
    holder = sqlite3.connect(state / "state.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # in this, another process than the server's
    results: list[int] = []

    def write(i: int) -> None:
        r = server.post(f"/sessions/l{i}/events", json={"events": [{"item_id": items[i]}]}, timeout=30)
        results.append(r.status_code)

    try:
        threads = [threading.Thread(target=write, args=(i,)) for i in range(3)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        r = server.get("/health")
        assert r.status_code == 503 and "locked" in r.json()["status"], r.text
        assert server.get("/sessions/b0").status_code == 200  # reads do not wait for the writer (WAL)
        for t in threads:
            t.join(30)
        assert sorted(results) == [503, 503, 503], results
        assert time.monotonic() - t0 < 25
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert server.get("/health").status_code == 200
    assert _writes(server, "c", items[:2])[0] == {200: 2}
    os.killpg(server.proc.pid, signal.SIGKILL)  # a crash: what was acknowledged is on disk
    server.proc.wait(10)
    logged = _logged(state)
    assert set(acked) | {"c0", "c1"} <= logged and not any(s.startswith("l") for s in logged)
