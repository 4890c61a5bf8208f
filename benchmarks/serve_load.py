"""Load test of the HTTP server on loopback: latency percentiles and throughput under mixed traffic.

    python -m benchmarks.serve_load [--model-dir DIR | --data-dir DIR] [--requests 10000] [--concurrency 8]

Starts `python -m playnext.serve` in a subprocess on 127.0.0.1, waits for /health, then sends a
fixed, seeded mix of requests from `--concurrency` client threads (k=10 everywhere):

    45% POST /recommend {user_id}            20% POST /recommend {history: 3–20 items}
    10% POST /sessions/{id}/events, then POST /recommend {session_id} (2 requests)
    10% GET /items/{id}/similar               10% GET /items?query=…       5% POST /search

`--rate R` paces the run open-loop instead: requests are sent on a fixed schedule of R per second
whatever the server's speed, and each latency is counted from its *scheduled* time, so a stalled
server cannot hide its queueing delay (no coordinated omission). `--mix recommend` keeps only the
three /recommend kinds (user, history, session), the route the latency target is about;
`--no-explain` asks for no reasons (for sequence models each reason costs forward passes).

The model is `--model-dir`; else EASE trained on ML-1M when `--data-dir` holds ml-1m/; else EASE
on the synthetic world. Every request must succeed (2xx); the run fails otherwise. Writes one
record to benchmarks/results/serve_load.json. Requests are bounded in count and the server is
always stopped.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.common import append_record, environment, http_call

QUERIES = [
    "a funny space adventure",
    "dark horror",
    "relaxing jazz for the evening",
    "epic fantasy rpg",
    "romantic drama",
    "fast racing game",
    "sad songs",
    "true story documentary",
]


def build_model(args: argparse.Namespace, out: Path) -> tuple[Path, str]:
    """The artifact to serve, and the dataset name for the record."""
    from playnext.artifact import Artifact
    from playnext.models.ease import EASE, EASEConfig

    if args.model_dir is not None:
        return Path(args.model_dir), args.dataset or Path(args.model_dir).name
    if args.data_dir is not None:
        from playnext.data.readers import load_dataset

        data, name = load_dataset("ml-1m", Path(args.data_dir) / "ml-1m"), "ml-1m"
    else:
        from playnext.data.synthetic import generate_world

        data, name = generate_world(n_users=args.synthetic_users, seed=0), "synthetic"
    t0 = time.perf_counter()
    model = EASE(EASEConfig(l2=500.0)).fit(data)
    print(f"trained EASE on {name} in {time.perf_counter() - t0:.1f}s", flush=True)
    return Artifact.from_data(model, data, {"dataset": name, "model": "ease"}).save(out / "model"), name


def start_server(model_dir: Path, args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PLAYNEXT_TEXT_ENCODER": args.text_encoder}
    proc = subprocess.Popen(
        [sys.executable, "-m", "playnext.serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.startup_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"server did not come up in {args.startup_timeout}s:\n{log.read_text()[-3000:]}")


Request = tuple[str, str, dict[str, Any] | None]  # (kind, path, JSON body or None for GET)


def plan(
    n: int,
    users: list[str],
    catalog: list[str],
    top: list[dict[str, Any]],
    seed: int,
    mix: str = "all",
    explain: bool = True,
) -> list[list[Request]]:
    """`n` requests as groups (a session event and its recommend stay in order), seeded.

    `top`: the most popular items (session events and title-search words come from them)."""
    rng = np.random.default_rng(seed)
    pop = [it["item_id"] for it in top]
    words = sorted({w.lower() for it in top for w in it["title"].split() if len(w) > 3})
    groups: list[list[Request]] = []
    count = 0
    while count < n:
        r = rng.random()
        if mix == "recommend":
            r = r * 0.75  # user 60%, history ~27%, session ~13% of groups
        g: list[Request]
        if r < 0.45 and users:
            g = [("recommend-user", "/recommend", {"user_id": users[rng.integers(len(users))], "k": 10})]
        elif r < 0.65:
            size = int(rng.integers(3, 21))
            hist = [catalog[int(i)] for i in rng.integers(len(catalog), size=size)]
            g = [("recommend-history", "/recommend", {"history": hist, "k": 10})]
        elif r < 0.75 and n - count >= 2:
            sid = f"load-{rng.integers(2000)}"
            item = pop[int(rng.integers(len(pop)))]
            g = [
                ("session-event", f"/sessions/{sid}/events", {"events": [{"item_id": item}]}),
                ("recommend-session", "/recommend", {"session_id": sid, "k": 10}),
            ]
        elif r < 0.85:
            g = [("similar", f"/items/{catalog[int(rng.integers(len(catalog)))]}/similar?k=10", None)]
        elif r < 0.95:
            g = [("title-search", f"/items?limit=10&query={words[int(rng.integers(len(words)))]}", None)]
        else:
            g = [("search", "/search", {"query": QUERIES[int(rng.integers(len(QUERIES)))], "k": 10})]
        if not explain:
            g = [
                (kind, path, {**body, "explain": False} if path == "/recommend" and body else body)
                for kind, path, body in g
            ]
        groups.append(g)
        count += len(g)
    return groups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path)
    ap.add_argument("--data-dir", type=Path, default=None, help="Folder holding ml-1m/ (trains EASE on it).")
    ap.add_argument("--dataset", default=None, help="Dataset name for the record (with --model-dir).")
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0.0, help="open loop: requests per second (0: closed)")
    ap.add_argument("--mix", default="all", choices=["all", "recommend"])
    ap.add_argument("--no-explain", action="store_true", help="send explain=false (no reasons computed)")
    ap.add_argument("--text-encoder", default="minilm", choices=["minilm", "hashing", "none"])
    ap.add_argument("--synthetic-users", type=int, default=3000)
    ap.add_argument("--startup-timeout", type=float, default=300.0)
    ap.add_argument("--tag", default=None)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    if args.requests > 100_000:
        raise SystemExit("--requests is capped at 100000")

    from playnext.artifact import Artifact

    with tempfile.TemporaryDirectory(prefix="playnext-load-") as tmp:
        model_dir, dataset = build_model(args, Path(tmp))
        art = Artifact.load(model_dir)
        log = Path(tmp) / "server.log"
        t0 = time.perf_counter()
        proc, url = start_server(model_dir, args, log)
        startup = time.perf_counter() - t0
        print(f"server up at {url} in {startup:.1f}s", flush=True)
        try:
            users, items = art.users.external.to_list(), art.items.external.to_list()
            model_name = art.model.name
            del art  # the client needs only the ids; a loaded model would lengthen its GC pauses
            gc.collect()
            gc.freeze()
            record = run_load(url, args, dataset, model_name, startup, users, items)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    print({k: record[k] for k in ("metrics", "errors", "requests")}, flush=True)
    if not args.no_save:
        print("wrote", append_record("serve_load", record), flush=True)
    if record["errors"]:
        raise SystemExit(f"{record['errors']} requests failed: {record['error_samples']}")


def run_load(
    url: str,
    args: argparse.Namespace,
    dataset: str,
    model: str,
    startup: float,
    users: list[str],
    items: list[str],
) -> dict[str, Any]:
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "c"):
            local.c = httpx.Client(base_url=url, timeout=30)
        return local.c  # type: ignore[no-any-return,unused-ignore]

    with httpx.Client(base_url=url, timeout=30) as c:
        top = c.get("/items", params={"limit": 100}).json()["items"]
    explain = not args.no_explain
    warm = plan(args.warmup, users, items, top, seed=1, mix=args.mix, explain=explain)
    groups = plan(args.requests, users, items, top, seed=0, mix=args.mix, explain=explain)
    lat: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    lock = threading.Lock()

    def send(group: list[Request], record: bool, due: float | None = None) -> None:
        for i, (kind, path, body) in enumerate(group):
            t = due if due is not None and i == 0 else time.perf_counter()
            ok, why = http_call(client(), path, body)
            dt = time.perf_counter() - t
            if record:
                with lock:
                    lat[kind].append(dt)
                    if not ok:
                        errors.append(f"{kind} {path}: {why}")

    with ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(lambda g: send(g, False), warm))
        t0 = time.perf_counter()
        if args.rate > 0:  # open loop: submit on schedule, never wait for answers
            futures = []
            sent = 0
            for g in groups:
                due = t0 + sent / args.rate  # --rate counts requests (a session group is two)
                sent += len(g)
                time.sleep(max(0.0, due - time.perf_counter()))
                futures.append(pool.submit(send, g, True, due))
            for f in futures:
                f.result()
        else:
            list(pool.map(lambda g: send(g, True), groups))
        wall = time.perf_counter() - t0
    every = np.concatenate([np.asarray(v) for v in lat.values()]) * 1000
    n = len(every)

    def pct(a: np.ndarray) -> dict[str, float]:
        return {f"p{p}_ms": float(np.percentile(a, p)) for p in (50, 95, 99)}

    return {
        "model": model,
        "dataset": dataset,
        "seed": 0,
        "tag": args.tag or f"load-{n}",
        "metrics": {**pct(every), "throughput_rps": n / wall, "error_rate": len(errors) / n},
        "per_route": {k: {"count": len(v), **pct(np.asarray(v) * 1000)} for k, v in sorted(lat.items())},
        "requests": n,
        "errors": len(errors),
        "error_samples": errors[:5],
        "concurrency": args.concurrency,
        "mode": f"open loop, {args.rate:g} requests/s scheduled" if args.rate > 0 else "closed loop",
        "mix": args.mix,
        "explain": explain,
        "k": 10,
        "wall_seconds": wall,
        "server_startup_seconds": startup,
        "text_encoder": args.text_encoder,
        "env": environment(),
    }


if __name__ == "__main__":
    main()
