"""Durable serving state under load: crash durability, worker scaling, hot model swaps.

    python -m benchmarks.serve_state durability [--stores sqlite,postgresql]   -> serve_durability.json
    python -m benchmarks.serve_state workers [--workers 1,2,4]                -> serve_workers.json
    python -m benchmarks.serve_state swap                                     -> hot_swap.json

Each run starts `playnext serve` in a subprocess on 127.0.0.1 (its own process group, so SIGKILL
reaches every worker), serves EASE trained on ML-1M (from PLAYNEXT_DATA_DIR; the synthetic world
otherwise) with the hashing text encoder, and drives it from client threads here. PostgreSQL runs
use PLAYNEXT_TEST_POSTGRES, else a server started by .ci/postgres.sh (skipped when none starts).

- durability: clients send single-event writes (each carries a unique value); once half the
  events are acknowledged the server is SIGKILLed mid-burst, restarted on the same store, and the
  rest are sent. Every acknowledged event must be in the store afterwards (`lost` = 0).
- workers: an open-loop mixed load (50% /recommend, 30% event writes, 20% session reads), rates
  stepped up until p99 > 50 ms or a request fails; the record keeps each step and names the
  highest rate that held. Latency counts from the scheduled send time (no coordinated omission).
- swap: 60 s at 100 requests/s against `--model-root`, a new version published every 10 s;
  every request must succeed, and p99 is reported for the whole run and for the 3 s after swaps.
Request loops are bounded in count and time; the server is always stopped.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.common import append_record, environment, http_call

ROOT = Path(__file__).resolve().parent.parent


# ---- set-up -------------------------------------------------------------------------------------
def build_models(out: Path) -> tuple[list[Path], str]:
    """Two EASE models (different l2) on ML-1M or the synthetic world: swap alternates them."""
    from playnext.artifact import Artifact
    from playnext.models.ease import EASE, EASEConfig

    data_dir = os.environ.get("PLAYNEXT_DATA_DIR")
    if data_dir and (Path(data_dir) / "ml-1m").is_dir():
        from playnext.data.readers import load_dataset

        data, name = load_dataset("ml-1m", Path(data_dir) / "ml-1m"), "ml-1m"
    else:
        from playnext.data.synthetic import generate_world

        data, name = generate_world(n_users=3000, seed=0), "synthetic"
    dirs = []
    for l2 in (500.0, 300.0):
        model = EASE(EASEConfig(l2=l2)).fit(data)
        info = {"dataset": name, "model": "ease", "params": {"l2": l2}}
        dirs.append(Artifact.from_data(model, data, info).save(out / f"ease-l2-{int(l2)}"))
    return dirs, name


def postgres_url() -> str | None:
    url = os.environ.get("PLAYNEXT_TEST_POSTGRES")
    if url:
        return url
    folder = Path(tempfile.gettempdir()) / "playnext-test-pg"
    r = subprocess.run(
        ["bash", str(ROOT / ".ci" / "postgres.sh"), str(folder)], capture_output=True, text=True
    )
    return r.stdout.strip().splitlines()[-1] if r.returncode == 0 else None


def fresh_pg_database(base: str, name: str) -> str:
    import sqlalchemy as sa

    admin = sa.create_engine(
        base.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return base.rsplit("/", 1)[0] + "/" + name


def stores(which: str, tmp: Path, tag: str) -> list[tuple[str, str]]:
    out = []
    for kind in which.split(","):
        if kind == "sqlite":
            out.append(("sqlite", str(tmp / f"state-{tag}")))
        elif kind == "postgresql":
            base = postgres_url()
            if base is None:
                print("no PostgreSQL server: its runs are skipped", flush=True)
                continue
            out.append(("postgresql", fresh_pg_database(base, f"bench_{tag}")))
    return out


class Server:
    """`playnext serve` in its own process group, on a free loopback port."""

    def __init__(self, args: list[str], log: Path, token: str = "bench") -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.args, self.log, self.token = args, log, token
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 300.0) -> float:
        env = {
            **os.environ,
            "PLAYNEXT_TEXT_ENCODER": "hashing",
            "PLAYNEXT_TOKEN": self.token,
            "OMP_WAIT_POLICY": "PASSIVE",
        }
        cmd = [sys.executable, "-m", "playnext.cli", "serve", *self.args, "--port", str(self.port)]
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise SystemExit(f"server did not come up in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL to the whole group: the supervisor and every worker die at once."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def pct(a: list[float] | np.ndarray) -> dict[str, float]:
    arr = np.asarray(a, dtype=np.float64) * 1000
    if not len(arr):
        return {}
    return {f"p{p}_ms": float(np.percentile(arr, p)) for p in (50, 95, 99)}


# ---- durability -------------------------------------------------------------------------------
def durability(args: argparse.Namespace, models: list[Path], dataset: str, tmp: Path) -> None:
    from playnext.artifact import Artifact

    items = Artifact.load(models[0]).items.external.to_list()[:200]
    for kind, where in stores(args.stores, tmp, "durability"):
        durability_run(args, models[0], dataset, tmp, items, kind, where)


def durability_run(
    args: argparse.Namespace, model: Path, dataset: str, tmp: Path, items: list[str], kind: str, where: str
) -> None:
    from playnext.state import StateStore

    server = Server(
        ["--model-dir", str(model), "--state", where, "--workers", str(args.workers)],
        tmp / f"dur-{kind}.log",
    )
    server.start()
    acked: set[float] = set()
    failed_sends = 0
    lock = threading.Lock()
    counter = iter(range(10**9))
    killed = threading.Event()

    def send(n: int) -> None:
        nonlocal failed_sends
        with httpx.Client(base_url=server.url, timeout=10) as c:
            for _ in range(n):
                with lock:
                    v = float(next(counter))
                body = {"events": [{"item_id": items[int(v) % len(items)], "event": "play", "value": v}]}
                try:
                    r = c.post(f"/sessions/dur-{int(v) % 50}/events", json=body)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    if ok:
                        acked.add(v)
                    else:
                        failed_sends += 1
                if not ok and killed.is_set():
                    return  # the server is gone: this client's burst ends with its failed request

    half = args.events // 2
    threads = [threading.Thread(target=send, args=(args.events,)) for _ in range(args.clients)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 600
    while len(acked) < half:  # kill mid-burst, while every client has requests in flight
        if time.monotonic() > deadline:
            server.stop()
            raise SystemExit(f"only {len(acked)} of {half} events acknowledged in 600 s")
        time.sleep(0.001)
    server.kill()
    killed.set()
    acked_at_kill = len(acked)
    for t in threads:
        t.join()
    server.start()
    if len(acked) < args.events:
        send(args.events - len(acked))
    server.stop()
    store = StateStore.open(where)
    stored = {e.value for e in store.events() if e.value is not None}
    store.close()
    lost = sorted(acked - stored)
    record = {
        "model": "ease",
        "dataset": dataset,
        "seed": 0,
        "tag": f"durability-{kind}",
        "store": kind,
        "metrics": {
            "acknowledged": len(acked),
            "recovered": len(acked & stored),
            "lost": len(lost),
            "stored_unacknowledged": len(stored - acked),
        },
        "acknowledged_before_kill": acked_at_kill,
        "failed_sends": failed_sends,
        "lost_sample": lost[:10],
        "params": {"events": args.events, "clients": args.clients, "workers": args.workers},
        "train_seconds": 0.0,
        "kill": "SIGKILL to the server's process group once half the events were acknowledged",
        "env": environment(),
    }
    print(kind, record["metrics"], flush=True)
    append_record("serve_durability", record)


# ---- mixed open-loop load -----------------------------------------------------------------------
def mixed_plan(
    n: int, users: list[str], items: list[str], seed: int
) -> list[tuple[str, str, dict[str, Any] | None]]:
    rng = np.random.default_rng(seed)
    out: list[tuple[str, str, dict[str, Any] | None]] = []
    for _ in range(n):
        r = rng.random()
        sid = f"mix-{int(rng.integers(500))}"
        if r < 0.25:
            out.append(
                ("recommend-user", "/recommend", {"user_id": users[int(rng.integers(len(users)))], "k": 10})
            )
        elif r < 0.40:
            hist = [items[int(i)] for i in rng.integers(len(items), size=int(rng.integers(3, 21)))]
            out.append(("recommend-history", "/recommend", {"history": hist, "k": 10}))
        elif r < 0.50:
            out.append(("recommend-session", "/recommend", {"session_id": "mix-seed", "k": 10}))
        elif r < 0.80:
            ev = {
                "item_id": items[int(rng.integers(len(items)))],
                "event": "play",
                "value": float(rng.random()),
            }
            out.append(("event-write", f"/sessions/{sid}/events", {"events": [ev]}))
        else:
            out.append(("session-read", "/sessions/mix-seed", None))
    return out


def open_loop(
    url: str, plan: list[tuple[str, str, dict[str, Any] | None]], rate: float, threads: int = 48
) -> dict[str, Any]:
    """Send `plan` at `rate` requests/s on schedule; latency from the scheduled time."""
    local = threading.local()
    lat: list[tuple[float, str, float]] = []  # (scheduled offset, kind, seconds)
    errors: list[str] = []
    lock = threading.Lock()

    def client() -> httpx.Client:
        if not hasattr(local, "c"):
            local.c = httpx.Client(base_url=url, timeout=30)
        return local.c  # type: ignore[no-any-return,unused-ignore]

    def send(kind: str, path: str, body: dict[str, Any] | None, due: float, t0: float) -> None:
        ok, why = http_call(client(), path, body)
        dt = time.perf_counter() - due
        with lock:
            lat.append((due - t0, kind, dt))
            if not ok:
                errors.append(f"{kind} {path}: {why}")

    with ThreadPoolExecutor(threads) as pool:
        t0 = time.perf_counter()
        futures = []
        for i, (kind, path, body) in enumerate(plan):
            due = t0 + i / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            futures.append(pool.submit(send, kind, path, body, due, t0))
        for f in futures:
            f.result()
        wall = time.perf_counter() - t0
    return {"lat": lat, "errors": errors, "wall": wall}


def workers(args: argparse.Namespace, models: list[Path], dataset: str, tmp: Path) -> None:
    from playnext.artifact import Artifact

    art = Artifact.load(models[0])
    users, items = art.users.external.to_list(), art.items.external.to_list()
    del art
    rates = [float(r) for r in args.rates.split(",")]
    for kind, where in stores(args.stores, tmp, "workers"):
        for n_workers in [int(w) for w in args.workers_list.split(",")]:
            if kind == "sqlite":
                where = str(tmp / f"state-workers-{n_workers}")
            server = Server(
                ["--model-dir", str(models[0]), "--state", where, "--workers", str(n_workers)],
                tmp / f"workers-{kind}-{n_workers}.log",
            )
            startup = server.start()
            steps = []
            try:
                with httpx.Client(base_url=server.url, timeout=30) as c:
                    c.post("/sessions/mix-seed/events", json={"events": [{"item_id": i} for i in items[:5]]})
                    for _ in range(50):  # warm every worker
                        c.post("/recommend", json={"user_id": users[0], "k": 10})
                for rate in rates:
                    n = int(min(args.max_requests, rate * args.step_seconds))
                    cpu0 = group_cpu_seconds(server.proc)
                    res = open_loop(server.url, mixed_plan(n, users, items, seed=int(rate)), rate)
                    cpu_ms = 1000 * (group_cpu_seconds(server.proc) - cpu0) / n
                    secs = [x[2] for x in res["lat"]]
                    step = {
                        "rate": rate,
                        "requests": n,
                        **pct(secs),
                        "errors": len(res["errors"]),
                        "error_samples": res["errors"][:3],
                        "achieved_rps": n / res["wall"],
                        # the server's CPU (every worker) per request: steadier than p99 near saturation
                        "server_cpu_ms_per_request": cpu_ms,
                        "per_kind": {
                            k: pct([x[2] for x in res["lat"] if x[1] == k])
                            for k in sorted({x[1] for x in res["lat"]})
                        },
                    }
                    steps.append(step)
                    print(
                        kind,
                        n_workers,
                        "workers",
                        rate,
                        "req/s:",
                        {k: step[k] for k in ("p50_ms", "p99_ms", "errors")},
                        flush=True,
                    )
                    if step["p99_ms"] > args.p99_ms or step["errors"]:
                        break
            finally:
                server.stop()
            held = [s for s in steps if s["p99_ms"] <= args.p99_ms and not s["errors"]]
            best = held[-1] if held else None
            record = {
                "model": "ease",
                "dataset": dataset,
                "seed": 0,
                "tag": f"workers-{kind}-{n_workers}",
                "store": kind,
                "workers": n_workers,
                "metrics": {
                    "max_rate_p99_le_50ms": best["rate"] if best else 0.0,
                    "p50_ms": best["p50_ms"] if best else None,
                    "p99_ms": best["p99_ms"] if best else None,
                    "errors": best["errors"] if best else None,
                },
                "steps": steps,
                "params": {"rates": rates, "step_seconds": args.step_seconds, "p99_ms": args.p99_ms},
                "mix": "25% recommend user, 15% recommend history, 10% recommend session, "
                "30% event write, 20% session read",
                "train_seconds": 0.0,
                "server_startup_seconds": startup,
                "client": "open loop from 48 threads in one process on the same 2 cores",
                "env": environment(),
            }
            append_record("serve_workers", record)


def group_cpu_seconds(proc: subprocess.Popen[bytes] | None) -> float:
    """User + system CPU seconds of a server process and all its live children (the workers)."""
    import psutil

    assert proc is not None
    root = psutil.Process(proc.pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:  # a worker that exited between the listing and the read
            continue
        total += t.user + t.system
    return total


# ---- hot swap -----------------------------------------------------------------------------------
def swap(args: argparse.Namespace, models: list[Path], dataset: str, tmp: Path) -> None:
    from playnext.artifact import Artifact, publish

    art = Artifact.load(models[0])
    users, items = art.users.external.to_list(), art.items.external.to_list()
    del art
    root = tmp / "root"
    publish(models[0], root, "v0")
    server = Server(
        ["--model-root", str(root), "--workers", str(args.workers)],
        tmp / "swap.log",
    )
    startup = server.start()
    swaps: list[float] = []
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            c.post("/sessions/mix-seed/events", json={"events": [{"item_id": i} for i in items[:5]]})
            for _ in range(50):
                c.post("/recommend", json={"user_id": users[0], "k": 10})
        n = int(args.rate * args.seconds)
        plan = mixed_plan(n, users, items, seed=7)
        stop = threading.Event()

        def publisher(t0: float) -> None:
            k = 1
            while not stop.wait(max(0.0, t0 + k * args.every - time.perf_counter())):
                publish(models[k % 2], root, f"v{k}")
                swaps.append(time.perf_counter() - t0)
                k += 1

        t0 = time.perf_counter()
        pub = threading.Thread(target=publisher, args=(t0,), daemon=True)
        pub.start()
        res = open_loop(server.url, plan, args.rate)
        stop.set()
        pub.join()
        with httpx.Client(base_url=server.url, timeout=30) as c:
            health = c.get("/health").json()
    finally:
        server.stop()
    lat = res["lat"]
    near = [x[2] for x in lat if any(0 <= x[0] - s <= 3.0 for s in swaps)]
    record = {
        "model": "ease",
        "dataset": dataset,
        "seed": 0,
        "tag": f"swap-{args.workers}w",
        "metrics": {
            "failed_requests": len(res["errors"]),
            "requests": len(lat),
            "swaps": len(swaps),
            **pct([x[2] for x in lat]),
            **{f"swap_window_{k}": v for k, v in pct(near).items()},
        },
        "error_samples": res["errors"][:5],
        "swap_times_s": swaps,
        "health_after": {k: health.get(k) for k in ("model", "serving")},
        "params": {"rate": args.rate, "seconds": args.seconds, "every": args.every, "workers": args.workers},
        "train_seconds": 0.0,
        "server_startup_seconds": startup,
        "env": environment(),
    }
    print(record["metrics"], flush=True)
    append_record("hot_swap", record)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["durability", "workers", "swap"])
    ap.add_argument("--stores", default="sqlite,postgresql")
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="durability and swap runs")
    ap.add_argument("--workers-list", default="1,2,4")
    ap.add_argument("--rates", default="25,50,100,150,200,250,300,400,500")
    ap.add_argument("--step-seconds", type=float, default=10.0)
    ap.add_argument("--max-requests", type=int, default=6000)
    ap.add_argument("--p99-ms", type=float, default=50.0)
    ap.add_argument("--rate", type=float, default=100.0, help="swap run")
    ap.add_argument("--seconds", type=float, default=60.0, help="swap run")
    ap.add_argument("--every", type=float, default=10.0, help="swap run: seconds between publishes")
    args = ap.parse_args()
    if args.events > 100_000:
        raise SystemExit("--events is capped at 100000")
    with tempfile.TemporaryDirectory(prefix="playnext-state-bench-") as t:
        tmp = Path(t)
        models, dataset = build_models(tmp)
        {"durability": durability, "workers": workers, "swap": swap}[args.what](args, models, dataset, tmp)


if __name__ == "__main__":
    main()
