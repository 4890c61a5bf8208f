"""The fault suite's real processes: a small synthetic world, saved EASE and popularity model
folders, and `playnext serve` started as a subprocess on a free loopback port.

`serve(*args, env=...)` starts a server (its own process group, log in the test's folder) and
waits for /health; every server a test started is stopped when it ends, SIGKILL after 10 s.
Each request goes on a new connection unless a test says otherwise, so the kernel spreads them
over the workers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from playnext.artifact import Artifact
from playnext.data.interactions import Interactions
from playnext.data.synthetic import generate_world
from playnext.models.ease import EASE, EASEConfig
from playnext.models.popular import Popular, PopularConfig

TOKEN = "fault-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One `playnext serve` process group."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=kw.pop("timeout", 10), **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log_text()}")
            try:
                if self.get("/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log_text()}")

    def healths(self, n: int = 20) -> list[dict[str, Any]]:
        """`n` /health bodies, each over a new connection (so from any worker); a refused or
        failed request is a body {"error": …}."""
        out: list[dict[str, Any]] = []
        for _ in range(n):
            try:
                r = self.get("/health", timeout=5)
                out.append(r.json() if r.status_code == 200 else {"error": r.status_code, **r.json()})
            except (httpx.HTTPError, ValueError) as e:
                out.append({"error": repr(e)})
        return out

    def worker_pids(self, want: int, timeout: float = 60) -> set[int]:
        """The pids answering /health, once `want` distinct ones have been seen (a bound, not a
        wait: on 2 shared cores a second worker can take tens of seconds to start)."""
        pids: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(pids) < want and time.monotonic() < deadline:
            pids |= {h["pid"] for h in self.healths(5) if "pid" in h}
        assert len(pids) >= want, f"saw workers {pids}, wanted {want}"
        return pids

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            except ProcessLookupError:
                pass


def serve_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """The environment a fault-suite server runs with: the hashing text encoder (no model files),
    a cache in the test's folder, idle OpenMP threads, the test token."""
    return {
        **os.environ,
        "PLAYNEXT_TEXT_ENCODER": "hashing",
        "PLAYNEXT_CACHE_DIR": str(tmp_path / "cache"),
        "PLAYNEXT_TOKEN": TOKEN,
        "OMP_WAIT_POLICY": "PASSIVE",
        **env,
    }


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """`serve("--model-dir", d, "--workers", "2", env={...}, ready=True)`: a started server."""
    started: list[Server] = []

    def start(*args: str | Path, env: dict[str, str] | None = None, ready: bool = True) -> Server:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        cmd = [sys.executable, "-m", "playnext.cli", "serve", *map(str, args), "--port", str(port)]
        with open(log, "wb") as f:
            proc = subprocess.Popen(
                cmd,
                env=serve_env(tmp_path, **(env or {})),
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(proc, port, log)
        started.append(server)
        if ready:
            server.wait_ready()
        return server

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def fault_world() -> Interactions:
    return generate_world(n_users=200, n_items=400, seed=0)


@pytest.fixture(scope="session")
def model_dirs(fault_world: Interactions, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Saved model folders to copy from (never served in place): `ease` and `popular`, both
    named `model` in their own parent folders (the same folder name, as a deployment has)."""
    root = tmp_path_factory.mktemp("fault-models")
    ease = EASE(EASEConfig(l2=50.0)).fit(fault_world)
    pop = Popular(PopularConfig()).fit(fault_world)
    return {
        name: Artifact.from_data(model, fault_world, {"model": name}).save(root / name / "model")
        for name, model in (("ease", ease), ("popular", pop))
    }


def item_ids(world: Interactions, n: int = 5) -> list[str]:
    return [str(i) for i in world.items.external.to_list()[:n]]
