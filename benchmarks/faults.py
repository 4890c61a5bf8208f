"""The operator's faults of issue #30, each against real `playnext serve` processes: what was done,
what the clients saw, and whether any acknowledged write was lost.

    python -m benchmarks.faults [--cases dead-worker-mistyped-current,…]   -> faults.json

EASE and popularity on ML-100K (from PLAYNEXT_DATA_DIR; the synthetic world otherwise), the
hashing text encoder, servers on free loopback ports in their own process groups. In most cases
client threads run throughout, each sending an event write (a unique `value`) and a /recommend
over new connections, so the kernel spreads them over the workers. One record per case:

- `metrics.acknowledged`: writes answered 200 after the fault (all of the run's where the fault
  leaves the store as it was); `recovered` of those found in the store afterwards (after a
  restart where the case has one); `lost` = acknowledged − recovered. Target 0.
- `metrics.server_errors`: 5xx answers other than a deliberate 503. Target 0.
- `statuses`: every answer the clients saw, by status or by the connection error's name.
- per case: `converged_s` (every worker on `current` after a swap; target ≤ 2 s), `respawn_s`,
  the /health answers, exit codes and the one line a refusal prints.

The cases that need root (a small tmpfs for a full disk) are recorded as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import append_record, environment

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CASES: dict[str, Callable[[Ctx], dict[str, Any]]] = {}


def case(name: str) -> Callable[[Callable[[Ctx], dict[str, Any]]], Callable[[Ctx], dict[str, Any]]]:
    def register(fn: Callable[[Ctx], dict[str, Any]]) -> Callable[[Ctx], dict[str, Any]]:
        CASES[name] = fn
        return fn

    return register


# ---- servers and clients -----------------------------------------------------------------------
class Server:
    """`playnext serve` in its own process group on a free loopback port."""

    def __init__(self, args: list[str | Path], log: Path, env: dict[str, str]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "playnext.cli", "serve", *map(str, args), "--port", str(self.port)]
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(
                cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.log = log
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited {self.proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"server not ready in 120 s:\n{log.read_text()[-3000:]}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def healths(self, n: int = 8) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for _ in range(n):
            try:
                r = httpx.get(self.url + "/health", timeout=5)
                out.append({"http": r.status_code, **r.json()})
            except (httpx.HTTPError, ValueError) as e:
                out.append({"http": type(e).__name__})
        return out

    def pids(self, want: int, timeout: float = 30) -> set[int]:
        pids: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(pids) < want and time.monotonic() < deadline:
            pids |= {int(h["pid"]) for h in self.healths(4) if "pid" in h}
        return pids

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass


class Load:
    """Client threads until `finish()`: each sends an event write carrying a unique value, then a
    /recommend, each on a new connection; counts every answer and keeps the acknowledged values."""

    def __init__(self, url: str, items: list[str], threads: int = 2, new_sessions: bool = False) -> None:
        self.url, self.items, self.new_sessions = url, items, new_sessions
        self.statuses: Counter[str] = Counter()
        self.acked: list[float] = []
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)]
        for t in self._threads:
            t.start()

    def _count(self, what: str) -> None:
        with self._lock:
            self.statuses[what] += 1

    def _call(self, path: str, body: dict[str, Any]) -> int | None:
        try:
            r = httpx.post(self.url + path, json=body, timeout=10)
        except httpx.HTTPError as e:
            self._count(type(e).__name__)
            time.sleep(0.05)
            return None
        self._count(str(r.status_code))
        return r.status_code

    def _run(self, t: int) -> None:
        while not self._stop.is_set():
            with self._lock:
                n = self._next
                self._next += 1
            item = self.items[n % len(self.items)]
            session = f"load-{t}-{n}" if self.new_sessions else f"load-{t}-{n % 20}"
            body = {"events": [{"item_id": item, "value": float(n)}]}
            if self._call(f"/sessions/{session}/events", body) == 200:
                with self._lock:
                    self.acked.append(float(n))
            self._call("/recommend", {"history": [item], "k": 10})

    def mark(self) -> int:
        """How many writes were acknowledged so far (the ones before a fault)."""
        with self._lock:
            return len(self.acked)

    def finish(self) -> Load:
        self._stop.set()
        for t in self._threads:
            t.join(15)
        return self


def stored_values(where: Path) -> set[float]:
    """Every event value in the store (read once the servers are stopped)."""
    from playnext.state import StateStore

    store = StateStore.open(where)
    try:
        return {e.value for e in store.events() if e.value is not None}
    finally:
        store.close()


def raw_values(db: Path) -> set[float] | None:
    """Event values read straight from a SQLite file a server made unusable (the store itself
    refuses to open it); None when not even that reads."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return {float(v) for (v,) in con.execute("SELECT value FROM playnext_events") if v is not None}
        finally:
            con.close()
    except sqlite3.Error:
        return None


def outcome(load: Load | None, at_risk: list[float], found: set[float] | None) -> dict[str, Any]:
    """The record's metrics: acknowledged writes at risk, recovered, lost; 5xx other than 503."""
    statuses = load.statuses if load is not None else Counter[str]()
    recovered = len(set(at_risk) & found) if found is not None else None
    return {
        "acknowledged": len(at_risk),
        "recovered": recovered,
        "lost": len(at_risk) - recovered if recovered is not None else None,
        "server_errors": sum(n for s, n in statuses.items() if s.startswith("5") and s != "503"),
        "deliberate_503": statuses.get("503", 0),
        "requests": sum(statuses.values()),
    }


@dataclass
class Ctx:
    tmp: Path
    models: dict[str, Path]
    items: list[str]
    dataset: str

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PLAYNEXT_TEXT_ENCODER": "hashing",
            "PLAYNEXT_CACHE_DIR": str(self.tmp / "cache"),
            "PLAYNEXT_TOKEN": TOKEN,
            "OMP_WAIT_POLICY": "PASSIVE",
            **extra,
        }

    @contextmanager
    def serve(self, *args: str | Path, **env: str) -> Iterator[Server]:
        server = Server(list(args), self.tmp / "serve.log", self.env(**env))
        try:
            yield server
        finally:
            server.stop()

    def copy(self, name: str, to: str) -> Path:
        dst = self.tmp / to / "model"
        shutil.copytree(self.models[name], dst)
        return dst

    def cli(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "playnext.cli", *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=self.env())


def _repoint(root: Path, target: str) -> None:
    tmp = root / ".current.by-hand"
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, root / "current")


def _last_line(text: str) -> str:
    """The last line of a command's output, without this run's temporary folder."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last.replace(tempfile.gettempdir().rstrip("/") + "/", "$TMPDIR/")


# ---- the cases: models and workers (faults 1, 2, 5, 9) -----------------------------------------
def _dead_worker(ctx: Ctx, bad: str) -> dict[str, Any]:
    from playnext.artifact import publish

    root = ctx.tmp / f"root-{bad}"
    publish(ctx.models["ease"], root, "v1")
    with ctx.serve("--model-root", root, "--workers", "2", PLAYNEXT_SWAP_POLL_SECONDS="0.5") as srv:
        pids = srv.pids(2)
        load = Load(srv.url, ctx.items)
        time.sleep(1.0)
        if bad == "mistyped":
            _repoint(root, "versions/v1-typo")
            name, what = "v1-typo", "a mistyped name (versions/v1-typo)"
        else:
            shutil.copytree(ctx.models["popular"], root / "versions" / "v2")
            os.truncate(root / "versions" / "v2" / "weights.safetensors", 100)
            _repoint(root, "versions/v2")
            name, what = "v2", "a version with truncated weights"
        time.sleep(1.5)
        before = srv.healths(6)
        t0 = time.monotonic()
        os.kill(min(pids), signal.SIGKILL)
        fresh: set[int] = set()
        while not fresh and time.monotonic() - t0 < 30 and srv.alive():
            fresh = {int(h["pid"]) for h in srv.healths(4) if "pid" in h} - pids
        respawn_s = time.monotonic() - t0 if fresh else None
        time.sleep(2.0)
        load.finish()
        after = [h for h in srv.healths(20) if h.get("pid") in fresh][:1]
        alive = srv.alive()
    found = stored_values(root / "state")
    return {
        "fault": f"serve --model-root R --workers 2; R/current re-pointed by hand at {what}; "
        "kill -9 of one worker under load",
        "metrics": {**outcome(load, load.acked, found), "respawn_s": respawn_s, "server_alive": alive},
        "statuses": dict(load.statuses),
        "details": {
            "health_before_kill_names_the_target": all(
                name in str(h.get("serving", {}).get("last_error")) for h in before
            ),
            "respawned_worker": [{k: h.get(k) for k in ("model", "serving")} for h in after],
        },
    }


@case("dead-worker-mistyped-current")
def dead_worker_mistyped(ctx: Ctx) -> dict[str, Any]:
    return _dead_worker(ctx, "mistyped")


@case("dead-worker-truncated-current")
def dead_worker_truncated(ctx: Ctx) -> dict[str, Any]:
    return _dead_worker(ctx, "truncated")


@case("weights-truncated-in-place")
def truncated_in_place(ctx: Ctx) -> dict[str, Any]:
    live = ctx.copy("ease", "live")
    with ctx.serve("--model-dir", live, "--workers", "2") as srv:
        srv.pids(2)  # both serving before the files change (a worker started after it has no model)
        load = Load(srv.url, ctx.items)
        time.sleep(1.5)
        for f in live.iterdir():
            os.truncate(f, 0)
        time.sleep(3.0)
        load.finish()
        alive = srv.alive()
    found = stored_values(live.parent / "state")
    return {
        "fault": "truncate -s 0 of every file of the served model folder (weights included) under load",
        "metrics": {**outcome(load, load.acked, found), "server_alive": alive},
        "statuses": dict(load.statuses),
    }


@case("admin-swap-race")
def admin_swap_race(ctx: Ctx) -> dict[str, Any]:
    from playnext.artifact import current_model, publish

    root = ctx.tmp / "root-swap"
    publish(ctx.models["ease"], root, "v1")
    a, b = ctx.copy("popular", "a"), ctx.copy("ease", "b")  # two folders with the same name
    with ctx.serve("--model-root", root, "--workers", "2", PLAYNEXT_SWAP_POLL_SECONDS="1") as srv:
        srv.pids(2)
        load = Load(srv.url, ctx.items)
        time.sleep(1.0)
        answers: dict[str, int] = {}
        go = threading.Barrier(2)

        def swap(folder: Path) -> None:
            go.wait()
            r = httpx.post(
                srv.url + "/admin/model", json={"model_dir": str(folder)}, headers=AUTH, timeout=60
            )
            answers[folder.parent.name] = r.status_code

        threads = [threading.Thread(target=swap, args=(f,)) for f in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        # each worker's serving.loaded_at against the link's re-pointing: slow /health calls on
        # a busy machine do not count, only when the last worker switched
        converged_s, loaded, deadline = None, {}, time.monotonic() + 15
        while converged_s is None and time.monotonic() < deadline:
            target = current_model(root)
            model = json.loads((target / "model.json").read_text())["model"]
            hs = srv.healths(8)
            loaded = {h["pid"]: h["serving"]["loaded_at"] for h in hs if "pid" in h}
            on = all(h.get("model") == model and str(h["serving"]["path"]).endswith(target.name) for h in hs)
            if on and len(loaded) == 2:
                converged_s = max(loaded.values()) - (root / "current").lstat().st_mtime
        time.sleep(1.0)
        load.finish()
    found = stored_values(root / "state")
    return {
        "fault": "two POST /admin/model at once for a/model and b/model (same folder name), "
        "two workers, under load",
        "metrics": {**outcome(load, load.acked, found), "converged_s": converged_s},
        "statuses": dict(load.statuses),
        "details": {"admin_answers": answers, "versions": len(list((root / "versions").iterdir()))},
    }


def _trickle(port: int, data: bytes, closed: list[float], stop: threading.Event) -> None:
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.settimeout(1.0)
        for byte in data:
            if stop.is_set():
                return
            try:
                s.sendall(bytes([byte]))
                if s.recv(4096) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        else:
            return
        closed.append(time.monotonic() - t0)


@case("slow-clients")
def slow_clients(ctx: Ctx) -> dict[str, Any]:
    head = b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99\r\n"
    with ctx.serve("--model-dir", ctx.models["ease"]) as srv:  # the default settings
        load = Load(srv.url, ctx.items)
        closed: list[float] = []
        stop = threading.Event()
        threads = [
            threading.Thread(target=_trickle, args=(srv.port, head + b"x" * 60, closed, stop), daemon=True)
            for _ in range(20)
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stop.set()
        load.finish()
    return {
        "fault": "20 connections sending their request a byte a second, under load (default settings)",
        "metrics": {
            **outcome(load, load.acked, stored_values(ctx.models["ease"].parent / "state")),
            "slow_connections_closed": len(closed),
            "closed_after_s_max": max(closed) if closed else None,
        },
        "statuses": dict(load.statuses),
    }


SAVE = textwrap.dedent(
    """
    import sys
    from playnext.artifact import Artifact
    from playnext.batch import Job, recommend_all
    Artifact.load(sys.argv[1]).save(sys.argv[2] + "/model")
    recommend_all(sys.argv[2] + "/model", sys.argv[2] + "/recs.parquet", Job(k=3))
    """
)


@case("umask")
def umask(ctx: Ctx) -> dict[str, Any]:
    out = ctx.tmp / "umask"
    out.mkdir()
    r = subprocess.run(
        [sys.executable, "-c", SAVE, str(ctx.models["popular"]), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0o022),  # the child's umask is what is measured
    )
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in [out / "model", *(out / "model").iterdir()]}
    modes["recs.parquet"] = oct(stat.S_IMODE((out / "recs.parquet").stat().st_mode))
    return {
        "fault": "a model folder and a batch Parquet written under umask 022",
        "metrics": {
            "exit_code": r.returncode,
            "private_files": sum(m in ("0o600", "0o700") for m in modes.values()),
        },
        "details": {"modes": modes},
    }


@case("weights-mismatch")
def weights_mismatch(ctx: Ctx) -> dict[str, Any]:
    mixed = ctx.copy("ease", "mixed")
    shutil.copy(ctx.models["popular"] / "weights.safetensors", mixed / "weights.safetensors")
    r = ctx.cli("serve", "--model-dir", mixed, "--port", "1")
    return {
        "fault": "playnext serve of an EASE model.json beside popularity weights",
        "metrics": {"exit_code": r.returncode, "traceback": "Traceback" in r.stderr},
        "details": {"message": _last_line(r.stderr)},
    }


# ---- the cases: the state store (faults 3, 4, 6, 7, 8) -----------------------------------------
def _state_file(ctx: Ctx, how: str) -> dict[str, Any]:
    state = ctx.tmp / f"state-{how}"
    with ctx.serve("--model-dir", ctx.models["ease"], "--state", state, "--workers", "2") as srv:
        srv.pids(2)
        load = Load(srv.url, ctx.items)
        time.sleep(1.5)
        if how == "deleted":
            for f in state.glob("state.db*"):
                f.unlink()
        else:  # an older copy put back by hand, as a careless restore does
            with sqlite3.connect(state / "state.db") as src, sqlite3.connect(ctx.tmp / "old.db") as dst:
                src.backup(dst)
            shutil.move(ctx.tmp / "old.db", state / "state.db")
        before = load.mark()
        time.sleep(3.0)
        load.finish()
        health = Counter(h["http"] for h in srv.healths(6))
    after = load.acked[before:]  # acknowledged once the file was gone: what a restart must show
    done = "deleted (rm state/state.db*)" if how == "deleted" else "replaced by an older copy"
    with ctx.serve("--model-dir", ctx.models["ease"], "--state", state):
        pass  # a restart on the same folder
    return {
        "fault": f"state/state.db {done} under load, two workers; then a restart",
        "metrics": outcome(load, after, stored_values(state)),
        "statuses": dict(load.statuses),
        "details": {"acknowledged_before_the_fault": before, "health_after_the_fault": dict(health)},
    }


@case("state-file-deleted")
def state_deleted(ctx: Ctx) -> dict[str, Any]:
    return _state_file(ctx, "deleted")


@case("state-file-replaced")
def state_replaced(ctx: Ctx) -> dict[str, Any]:
    return _state_file(ctx, "replaced")


@case("eviction-race")
def eviction_race(ctx: Ctx) -> dict[str, Any]:
    state = ctx.tmp / "state-evict"
    with ctx.serve(
        "--model-dir", ctx.models["ease"], "--state", state, "--workers", "2", PLAYNEXT_MAX_SESSIONS="50"
    ) as srv:
        srv.pids(2)
        load = Load(srv.url, ctx.items, threads=4, new_sessions=True)
        deadline = time.monotonic() + 60
        while sum(load.statuses.values()) < 1000 and time.monotonic() < deadline:
            time.sleep(0.2)
        load.finish()
    return {
        "fault": "two workers, max_sessions=50, four clients creating new sessions",
        "metrics": outcome(load, load.acked, stored_values(state)),
        "statuses": dict(load.statuses),
    }


BAD_BODIES: list[tuple[str, str]] = [
    ("/recommend", '{"user_id": "1", "k": NaN}'),
    ("/recommend", '{"user_id": "1", "rerank": {"mmr": {"lambda": NaN}}}'),
    ("/recommend", '{"user_id": "1", "k": Infinity}'),
    ("/recommend", '{"history": ["\\ud800"]}'),
    ("/recommend", '{"user_id": "1", "k": true}'),
    ("/sessions/s/events", '{"events": [{"item_id": "1", "value": Infinity}]}'),
    ("/sessions/s/events", '{"events": [{"item_id": false}]}'),
    ("/search", '{"query": "x", "k": 1e999}'),
]


@case("bad-json")
def bad_json(ctx: Ctx) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    with ctx.serve("--model-dir", ctx.models["ease"]) as srv:
        for path, body in BAD_BODIES:
            r = httpx.post(srv.url + path, content=body, headers={"content-type": "application/json"})
            statuses[str(r.status_code)] += 1
    return {
        "fault": "bodies with NaN, Infinity, 1e999, a lone surrogate, booleans for numbers and ids",
        "metrics": {
            "requests": len(BAD_BODIES),
            "server_errors": sum(n for s, n in statuses.items() if s.startswith("5")),
            "unprocessable_422": statuses.get("422", 0),
        },
        "statuses": dict(statuses),
    }


def _unusable(ctx: Ctx, how: str, state: Path, breaks: Callable[[], None]) -> dict[str, Any]:
    with ctx.serve("--model-dir", ctx.models["ease"], "--state", state) as srv:
        load = Load(srv.url, ctx.items)
        time.sleep(1.0)
        breaks()
        before = load.mark()
        time.sleep(2.0)
        load.finish()
        health = Counter(h["http"] for h in srv.healths(4))
    after = load.acked[before:]
    return {
        "fault": f"the state store made unusable under a running server: {how}",
        "metrics": {
            **outcome(load, after, raw_values(state / "state.db")),
            "health_503": health.get(503, 0) == sum(health.values()),
        },
        "statuses": dict(load.statuses),
        "details": {"health": dict(health), "acknowledged_after_the_fault": len(after)},
    }


@case("store-corrupt-header")
def store_corrupt(ctx: Ctx) -> dict[str, Any]:
    state = ctx.tmp / "state-corrupt"

    def corrupt() -> None:
        with open(state / "state.db", "r+b") as f:  # the header overwritten in place (same inode)
            f.write(b"\0" * 16)

    return _unusable(ctx, "its header overwritten in place", state, corrupt)


@case("store-foreign-schema")
def store_foreign_schema(ctx: Ctx) -> dict[str, Any]:
    state = ctx.tmp / "state-foreign"

    def alter() -> None:
        with sqlite3.connect(state / "state.db", timeout=10) as con:
            con.execute("ALTER TABLE playnext_events ADD COLUMN extra INTEGER")

    return _unusable(ctx, "a column added to its event table", state, alter)


@case("store-wal-frame-damaged")
def store_wal_damaged(ctx: Ctx) -> dict[str, Any]:
    from playnext.state.wal import FRAME_HEADER, WAL_HEADER, shared_index

    state = ctx.tmp / "state-wal"

    def damage() -> None:
        index = shared_index(state / "state.db")
        if index is None or index.frames < 2:
            raise SystemExit("no committed frames in the write-ahead log to damage")
        with open(state / "state.db-wal", "r+b") as f:  # the last committed frame's page bytes
            f.seek(WAL_HEADER + (index.frames - 1) * (FRAME_HEADER + index.page_size) + FRAME_HEADER + 100)
            f.write(os.urandom(16))

    return _unusable(ctx, "bytes of a committed frame of state.db-wal changed; then SIGTERM", state, damage)


@case("store-page-damaged")
def store_page_damaged(ctx: Ctx) -> dict[str, Any]:
    state = ctx.tmp / "state-page"

    def damage() -> None:
        with sqlite3.connect(state / "state.db", timeout=10, isolation_level=None) as con:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            q = "SELECT pageno FROM dbstat WHERE name = 'playnext_events' AND pagetype = 'leaf'"
            q += " ORDER BY pageno"
            leaves = [p for (p,) in con.execute(q)]
        con.close()
        with open(state / "state.db", "r+b") as f:  # the oldest page of the log: nothing reads it
            f.seek((leaves[0] - 1) * 4096)
            f.write(b"\xff" + os.urandom(63))
        time.sleep(5.0)  # quick_check's interval: /health finds it within 5 s

    return _unusable(ctx, "the oldest page of the event log overwritten in state.db", state, damage)


@case("store-locked")
def store_locked(ctx: Ctx) -> dict[str, Any]:
    state = ctx.tmp / "state-locked"
    holder: list[sqlite3.Connection] = []

    def lock() -> None:
        con = sqlite3.connect(state / "state.db", isolation_level=None)
        con.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the busy timeout
        holder.append(con)
        time.sleep(11.0)

    try:
        return _unusable(ctx, "another process holds the write lock for 11 s", state, lock)
    finally:
        for con in holder:
            con.execute("ROLLBACK")
            con.close()


@case("store-disk-full")
def store_disk_full(ctx: Ctx) -> dict[str, Any]:
    state = ctx.tmp / "state-full"
    state.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state)], capture_output=True, text=True
    )
    if r.returncode != 0:
        return {
            "fault": "the state folder on a 2 MB tmpfs, filled",
            "skipped": f"needs root to mount a tmpfs ({_last_line(r.stderr)})",
        }
    try:

        def fill() -> None:
            try:
                with open(state / "filler", "wb") as f:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
            except OSError:  # full (perhaps already by the store's own writes)
                pass

        return _unusable(ctx, "its 2 MB disk filled", state, fill)
    finally:
        subprocess.run(["umount", "-l", str(state)], capture_output=True)


@case("schema-checks")
def schema_checks(ctx: Ctx) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, sql in (
        (
            "schema_version-abc",
            "CREATE TABLE playnext_meta (key VARCHAR(200) PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO playnext_meta VALUES ('schema_version', 'abc');",
        ),
        (
            "other-columns",
            "CREATE TABLE playnext_sessions (session_id TEXT PRIMARY KEY, owner TEXT, data BLOB);",
        ),
    ):
        state = ctx.tmp / f"state-{name}"
        state.mkdir()
        con = sqlite3.connect(state / "state.db")
        con.executescript(sql)
        con.close()
        r = ctx.cli("serve", "--model-dir", ctx.models["ease"], "--state", state, "--port", "1")
        out[name] = {
            "exit_code": r.returncode,
            "stderr_lines": len(r.stderr.strip().splitlines()),
            "message": _last_line(r.stderr),
        }
    return {
        "fault": "playnext serve on a store with schema_version 'abc', and on one with playnext's "
        "table names but other columns",
        "metrics": {"exit_2": all(v["exit_code"] == 2 for v in out.values())},
        "details": out,
    }


# ---- set-up and the record ---------------------------------------------------------------------
def build(tmp: Path) -> tuple[dict[str, Path], list[str], str]:
    from playnext.artifact import Artifact
    from playnext.models.ease import EASE, EASEConfig
    from playnext.models.popular import Popular, PopularConfig

    data_dir = os.environ.get("PLAYNEXT_DATA_DIR")
    if data_dir and (Path(data_dir) / "ml-100k").is_dir():
        from playnext.data.readers import load_dataset

        data, name = load_dataset("ml-100k", Path(data_dir) / "ml-100k"), "ml-100k"
    else:
        from playnext.data.synthetic import generate_world

        data, name = generate_world(n_users=500, n_items=800, seed=0), "synthetic"
    models = {}
    for key, model in (("ease", EASE(EASEConfig(l2=200.0))), ("popular", Popular(PopularConfig()))):
        info = {"dataset": name, "model": key}
        models[key] = Artifact.from_data(model.fit(data), data, info).save(tmp / "models" / key / "model")
    items = [str(i) for i in data.items.external.to_list()[:200]]
    return models, items, name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated; default: all")
    args = ap.parse_args()
    wanted = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(wanted) - set(CASES))
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    with tempfile.TemporaryDirectory(prefix="playnext-faults-") as t:
        tmp = Path(t)
        models, items, dataset = build(tmp)
        for name in wanted:
            folder = tmp / name
            folder.mkdir()
            t0 = time.perf_counter()
            row = CASES[name](Ctx(folder, models, items, dataset))
            record = {
                "model": "ease",
                "dataset": dataset,
                "seed": 0,
                "tag": f"fault-{name}",
                "case": name,
                **row,
                "seconds": round(time.perf_counter() - t0, 1),
                "params": {},
                "env": environment(),
            }
            print(name, json.dumps(record.get("metrics"), default=str), flush=True)
            append_record("faults", record)


if __name__ == "__main__":
    main()
