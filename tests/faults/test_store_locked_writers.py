"""Another process holds SQLite's write lock while many clients keep writing and retrying: /health
must still answer 503 within 2 s, and writes 503 (never 2xx unless committed).

In `benchmarks/faults.py`'s `store-locked` row every /health timed out (issue #30): its probe took
a connection from the writers' pool, which writes queued on the 10 s busy timeout had filled; once
a write had failed, the probe committed with the full busy timeout; and /health needed a thread of
the pool blocked writes fill. It now has its own connections (the lock waited for 1 s) and threads.
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

from playnext.data.interactions import Interactions
from playnext.state import StateStore

LOCK_S = 12.5  # past the 10 s busy timeout: writes have failed on it, and clients retried meanwhile


def test_health_answers_while_retrying_writers_queue_on_a_lock(
    serve: Callable[..., Any], model_dirs: dict[str, Path], fault_world: Interactions, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    items = [str(i) for i in fault_world.items.external.to_list()[:20]]
    server = serve("--model-dir", model_dirs["ease"], "--state", state)
    assert server.post("/sessions/before/events", json={"events": [{"item_id": items[0]}]}).status_code == 200
    statuses: Counter[str] = Counter()
    acked: list[str] = []
    mutex = threading.Lock()
    stop = threading.Event()

    def writer(t: int, timeout: float) -> None:
        """Writes to new sessions, giving up after `timeout` and retrying at once (as the benchmark)."""
        n = 0
        while not stop.is_set():
            sid = f"w{t}-{n}"
            n += 1
            try:
                r = httpx.post(
                    f"{server.url}/sessions/{sid}/events",
                    json={"events": [{"item_id": items[n % len(items)]}]},
                    timeout=timeout,
                )
                what = str(r.status_code)
            except httpx.HTTPError as e:
                what = type(e).__name__
            with mutex:
                statuses[what] += 1
                if what == "200":
                    acked.append(sid)

    holder = sqlite3.connect(state / "state.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process than the server's
    t0 = time.monotonic()
    # 10 clients giving up after 2 s: about 50 writes wait on the lock by 10 s, more than the
    # writers' connection pool (15) and the server's shared thread pool (40) hold
    threads = [threading.Thread(target=writer, args=(t, 2.0), daemon=True) for t in range(10)]
    threads.append(threading.Thread(target=writer, args=(10, 30.0), daemon=True))  # waits for its 503
    for t in threads:
        t.start()
    health: list[tuple[float, float, Any]] = []  # (since the lock, seconds taken, status or error)
    try:
        while (since := time.monotonic() - t0) < LOCK_S:
            h0 = time.monotonic()
            try:
                r = server.get("/health", timeout=2.0)
                got: Any = (r.status_code, r.json()["status"])
            except httpx.HTTPError as e:
                got = type(e).__name__
            health.append((round(since, 1), round(time.monotonic() - h0, 2), got))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - h0)))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        stop.set()
    for t in threads:
        t.join(35)
    assert len(health) >= 8, health
    bad = [h for h in health if not (isinstance(h[2], tuple) and h[2][0] == 503 and "locked" in h[2][1])]
    assert not bad, f"/health not a prompt 503 while locked: {bad} of {health}"  # before: ReadTimeout
    assert max(h[1] for h in health) < 2.0, health
    assert statuses["503"] >= 1, statuses  # the patient writer's answer
    assert not [s for s in statuses if s.startswith("5") and s != "503"], statuses
    deadline = time.monotonic() + 10  # queued writes finish; the next probe commits and clears the failure
    while server.get("/health").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert server.get("/health").status_code == 200
    after = server.post("/sessions/after/events", json={"events": [{"item_id": items[1]}]})
    assert after.status_code == 200
    os.killpg(server.proc.pid, signal.SIGKILL)  # a crash: every acknowledged write is on disk
    server.proc.wait(10)
    store = StateStore.open(state)
    try:
        logged = {e.session_id for e in store.events()}
    finally:
        store.close()
    assert {"before", "after", *acked} <= logged, sorted(set(acked) - logged)
