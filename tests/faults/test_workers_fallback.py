"""One worker that cannot load its model must not take the others down.

`serve --model-root R --workers 2`, `R/current` re-pointed by hand at a folder that does not
load (a mistyped link name, or a version whose weights were truncated), then one worker is
SIGKILLed: uvicorn respawns it, and a respawned worker that failed its start-up used to make
uvicorn stop the parent, and the healthy worker with it. Now a worker that cannot load
`current` serves the last good model, says why in /health, and the server keeps answering.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from playnext.artifact import publish
from playnext.data.interactions import Interactions


def _repoint(root: Path, target: str) -> None:
    """What an operator's `ln -sfn versions/NAME current` does: an atomic re-point."""
    tmp = root / ".current.by-hand"
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, root / "current")


class Load:
    """A client thread sending /recommend over new connections until stopped; counts outcomes."""

    def __init__(self, url: str, history: list[str]) -> None:
        self.url, self.history = url, history
        self.seen: Counter[str] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                r = httpx.post(self.url + "/recommend", json={"history": self.history, "k": 5}, timeout=5)
                self.seen[str(r.status_code)] += 1
            except httpx.HTTPError as e:
                self.seen[type(e).__name__] += 1
                time.sleep(0.05)

    def finish(self) -> Counter[str]:
        self.stop.set()
        self.thread.join(10)
        return self.seen


@pytest.mark.parametrize("bad", ["mistyped-link", "truncated-weights"])
def test_a_dead_worker_respawned_on_a_broken_current_serves_the_last_good_model(
    serve: Callable[..., Any],
    model_dirs: dict[str, Path],
    fault_world: Interactions,
    tmp_path: Path,
    bad: str,
) -> None:
    root = tmp_path / "root"
    publish(model_dirs["ease"], root, "v1")
    server = serve("--model-root", root, "--workers", "2", env={"PLAYNEXT_SWAP_POLL_SECONDS": "0.3"})
    pids = server.worker_pids(2)
    if bad == "mistyped-link":
        _repoint(root, "versions/v1-typo")  # no such folder
        name = "v1-typo"
    else:
        shutil.copytree(model_dirs["popular"], root / "versions" / "v2")
        os.truncate(root / "versions" / "v2" / "weights.safetensors", 100)
        _repoint(root, "versions/v2")
        name = "v2"
    # /health tells the truth before anything dies: every worker names the bad target
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        healths = server.healths(6)
        if all(name in str(h.get("serving", {}).get("last_error")) for h in healths):
            break
        time.sleep(0.2)
    assert all(h["model"] == "ease" for h in healths), healths
    assert all(name in str(h["serving"]["last_error"]) for h in healths), healths

    history = [str(i) for i in fault_world.items.external.to_list()[:3]]
    load = Load(server.url, history)
    victim = sorted(pids)[0]
    os.kill(victim, signal.SIGKILL)
    # uvicorn notices within a second and respawns it; the new one must start and serve
    deadline = time.monotonic() + 30
    fresh: set[int] = set()
    while time.monotonic() < deadline and not fresh:
        fresh = {h["pid"] for h in server.healths(4) if "pid" in h} - pids
        time.sleep(0.2)
    time.sleep(1)
    seen = load.finish()
    assert server.alive(), server.log_text()
    assert fresh, f"no respawned worker answered; outcomes {seen}\n{server.log_text()}"
    new = next(h for h in server.healths(30) if h.get("pid") in fresh)
    assert new["model"] == "ease" and name in str(new["serving"]["last_error"]), new
    assert new["serving"]["path"].endswith("v1"), new
    # every answer was a 200, bar connections the SIGKILL cut (a handful, from the victim's backlog)
    assert not [s for s in seen if s.startswith("5")], seen
    failed = sum(n for s, n in seen.items() if s != "200")
    assert seen["200"] > 20 and failed <= 5, seen
    # repairing the link brings every worker to it
    _repoint(root, "versions/v1")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        healths = server.healths(6)
        if all(h.get("serving", {}).get("last_error") is None for h in healths):
            break
        time.sleep(0.2)
    assert all(h["serving"]["last_error"] is None for h in healths), healths


def test_a_worker_that_loads_nothing_answers_503_while_the_others_serve(
    serve: Callable[..., Any], model_dirs: dict[str, Path], fault_world: Interactions, tmp_path: Path
) -> None:
    live = tmp_path / "live"
    shutil.copytree(model_dirs["ease"], live)
    server = serve("--model-dir", live, "--workers", "2", env={"PLAYNEXT_SWAP_POLL_SECONDS": "0.3"})
    pids = server.worker_pids(2)
    os.truncate(live / "weights.safetensors", 0)  # nothing left on disk that loads
    os.kill(sorted(pids)[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    statuses: Counter[int] = Counter()
    refused: dict[str, Any] = {}
    while time.monotonic() < deadline and not refused:
        for _ in range(6):
            try:
                r = server.get("/health", timeout=5)
            except httpx.HTTPError:
                continue
            statuses[r.status_code] += 1
            if r.status_code == 503:
                refused = r.json()
        time.sleep(0.2)
    assert server.alive(), server.log_text()
    assert "weights.safetensors" in refused.get("detail", ""), (statuses, refused, server.log_text())
    history = [str(i) for i in fault_world.items.external.to_list()[:3]]
    codes = Counter(
        server.post("/recommend", json={"history": history, "k": 5}).status_code for _ in range(20)
    )
    assert set(codes) <= {200, 503} and codes[200] > 0, codes
    # the model is repaired: the worker that had none loads it without a restart
    shutil.copy(model_dirs["ease"] / "weights.safetensors", live / "weights.safetensors")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        codes = Counter(server.get("/health").status_code for _ in range(8))
        if codes == Counter({200: 8}):
            break
        time.sleep(0.3)
    assert codes == Counter({200: 8}), codes
