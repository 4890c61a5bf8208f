"""The state file deleted or replaced under a running server acknowledges no write.

`rm state/state.db*` while serving: the workers' open connections went on writing to the
unlinked file, every event write answered 200, /health said ok, and after a restart all of them
were gone (issue #30, fault 3). Now each worker notices at its next transaction that the file at
the path is not the one it opened and answers 503 (no path in the body) until it is restarted.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from playnext.data.interactions import Interactions
from playnext.state import StateStore


def _write(server: Any, session: str, item: str) -> int:
    r = server.post(f"/sessions/{session}/events", json={"events": [{"item_id": item}]})
    return int(r.status_code)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_no_write_is_acknowledged_into_a_deleted_or_replaced_file(
    serve: Callable[..., Any],
    model_dirs: dict[str, Path],
    fault_world: Interactions,
    tmp_path: Path,
    how: str,
) -> None:
    state = tmp_path / "state"
    items = [str(i) for i in fault_world.items.external.to_list()[:40]]
    workers = 2 if how == "deleted" else 1  # every worker notices; one is enough for the other case
    server = serve("--model-dir", model_dirs["ease"], "--state", state, "--workers", str(workers))
    server.worker_pids(workers, timeout=40)  # all up before the fault (one started after opens the new file)
    before = [_write(server, f"b{i}", items[i]) for i in range(10)]
    assert before == [200] * 10
    if how == "deleted":
        for f in state.glob("state.db*"):
            f.unlink()
    else:  # a copy of an older state put back by hand, as a careless restore does
        with sqlite3.connect(state / "state.db") as src, sqlite3.connect(tmp_path / "old.db") as dst:
            src.backup(dst)
        shutil.move(tmp_path / "old.db", state / "state.db")
    after = Counter(_write(server, f"a{i}", items[i]) for i in range(30))
    assert after == {503: 30}, after  # nothing acknowledged, and no 500
    r = server.post("/sessions/x/events", json={"events": [{"item_id": items[0]}]})
    assert f"file was {how}" in r.json()["detail"] and str(tmp_path) not in r.text
    healths = server.healths(6)
    assert all(h.get("error") == 503 and f"file was {how}" in h["status"] for h in healths), [
        (h.get("error"), h.get("status")) for h in healths
    ]
    assert str(tmp_path) not in str(healths)
    server.stop()
    # what a restart opens: the file the path holds now; nothing acknowledged after the fault is lost
    store = StateStore.open(state)
    logged = {e.session_id for e in store.events()}
    assert not any(s.startswith("a") for s in logged)  # the 503s were not written either
    if how == "replaced":
        assert {f"b{i}" for i in range(10)} <= logged  # the restored copy holds what came before
