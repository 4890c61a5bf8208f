"""A real crash of `playnext serve`: every acknowledged event write survives SIGKILL.

The "reopen in a new process" test of the state store (tests/state) closes the store gracefully in
process. Here a 2-worker server takes event writes from 4 concurrent clients, the whole process
group is SIGKILLed while writes are still in flight (no shutdown handler, no `close()`, no atexit),
a new server starts on the same state folder, and every write that was answered 200 is read back
through the API and from the store file itself.

What it catches: a 200 sent before the transaction commits, writes buffered in memory or in a
write-behind queue and flushed later (or on shutdown), a commit left to a shutdown hook, a restart
that recreates or truncates the state, a WAL that a fresh process does not replay. What it
cannot catch: the OS page cache survives a process kill, so it cannot tell `synchronous=FULL`
from `OFF` (that needs a power cut; tests/state reads the pragma on the write connection).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from playnext.data.interactions import Interactions
from playnext.state import StateStore

N_ACKED = 120  # acknowledged writes before the kill
CLIENTS = 4


def test_every_acknowledged_write_survives_sigkill_and_restart(
    serve: Callable[..., Any], model_dirs: dict[str, Path], fault_world: Interactions, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    items = [str(i) for i in fault_world.items.external.to_list()[:50]]
    server = serve("--model-dir", model_dirs["ease"], "--state", state, "--workers", "2")
    acked: list[tuple[str, str, float]] = []  # (session, item, value) answered 200
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []

    def client(c: int) -> None:
        n = 0
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                session, item, value = (
                    f"c{c}-s{n // 4}",
                    items[(c * 7 + n) % len(items)],
                    float(c * 10_000 + n),
                )
                body = {"events": [{"item_id": item, "event": "play", "value": value}]}
                try:
                    r = http.post(f"{server.url}/sessions/{session}/events", json=body)
                except httpx.HTTPError:
                    if not server.alive():
                        return  # the kill: this write was never acknowledged
                    continue
                if r.status_code == 200:
                    with lock:
                        acked.append((session, item, value))
                elif server.alive():
                    errors.append(f"{r.status_code} {r.text[:200]}")
                n += 1

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while len(acked) < N_ACKED and time.monotonic() < deadline and not errors:
        time.sleep(0.01)
    # SIGKILL the master and its workers mid-stream, the clients still writing
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors[:5]
    assert server.proc.returncode == -signal.SIGKILL
    assert len(acked) >= N_ACKED, f"only {len(acked)} writes acknowledged in 120 s"

    # a new server on the same folder answers every acknowledged write, in each session's order
    again = serve("--model-dir", model_dirs["ease"], "--state", state, "--workers", "1")
    by_session: dict[str, list[tuple[str, float]]] = {}
    for session, item, value in acked:
        by_session.setdefault(session, []).append((item, value))
    for session, wanted in by_session.items():
        r = again.get(f"/sessions/{session}")
        assert r.status_code == 200, (session, r.status_code, r.text[:200])
        got = [(e["item_id"], e["value"]) for e in r.json()["events"]]
        missing = [w for w in wanted if w not in got]
        assert not missing, f"{session}: acknowledged and lost after the crash: {missing}"
        # a session's writes come from one client in order: the acknowledged ones keep it
        assert [g for g in got if g in wanted] == wanted
    again.stop()

    # and the file itself holds them, read without any server
    store = StateStore.open(state)
    try:
        logged = {(e.session_id, e.item_id, e.value) for e in store.events()}
    finally:
        store.close()
    lost = [a for a in acked if a not in logged]
    assert not lost, f"{len(lost)} acknowledged writes not in the store: {lost[:5]}"
