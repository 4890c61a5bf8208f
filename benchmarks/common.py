"""Shared plumbing for benchmark scripts: run records, atomic result files, environment facts."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playnext import experiment

RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("benchmarks")


# the folder of each dataset inside $PLAYNEXT_DATA_DIR (the original archives' names)
FOLDERS = {
    "ml-1m": "ml-1m",
    "ml-100k": "ml-100k",
    "lastfm-2k": "lastfm-hetrec-2k",
    "steam-200k": "steam-200k",
    "ml-latest-small": "ml-latest-small",
}
# the peers run README.md and docs/results.md show: playnext with its shipped sasrec block
PEERS_SHOWN = "peers-winners"


def data_path(dataset: str) -> Path:
    """`$PLAYNEXT_DATA_DIR/<dataset folder>`: benchmarks name no machine's paths."""
    root = os.environ.get("PLAYNEXT_DATA_DIR")
    if not root:
        raise SystemExit(f"{dataset}: pass --path or set PLAYNEXT_DATA_DIR to the folder of the datasets")
    return Path(root) / FOLDERS.get(dataset, dataset)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=RESULTS.parent,
            check=False,
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def environment() -> dict[str, Any]:
    """The application's environment facts plus the commit the benchmark ran at."""
    return {"git_commit": git_commit(), **experiment.environment()}


def bench_record(record: dict[str, Any], tag: str, **extra: Any) -> dict[str, Any]:
    """`playnext.experiment.record`'s run record as a benchmark stores it: with its tag and commit."""
    env = environment()
    return {**record, "tag": tag, "git_commit": env["git_commit"], "environment": env, **extra}


peak_rss_bytes = experiment.peak_rss_bytes


def _read(path: Path) -> Any:
    """A results file's JSON; a broken one is named with its line and column."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from e


def append_record(
    name: str, record: dict[str, Any], key: tuple[str, ...] = ("model", "dataset", "seed", "tag")
) -> Path:
    """Add one run to results/<name>.json (a JSON list), replacing a previous run with the same key.

    A lock file serialises concurrent benchmark processes; the write is temp-file + rename.
    Replacing a run made with other params is logged: a changed recipe under an old tag would
    otherwise erase the previous recipe's result without a trace. If the file cannot be read,
    it is left as it is and the new run goes to a file beside it, so hours of training survive.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    with open(RESULTS / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            records = _read(path) if path.exists() else []
            if not isinstance(records, list):
                raise ValueError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
        except ValueError as e:
            fd, unsaved = tempfile.mkstemp(dir=RESULTS, prefix=f"{name}.json.", suffix=".unsaved")
            with os.fdopen(fd, "w") as f:
                json.dump([record], f, indent=1, default=float)
            raise ValueError(f"{e}; this run's record was written to {unsaved} instead") from e
        ident = tuple(record.get(k) for k in key)
        kept: list[dict[str, Any]] = []
        for old in records:
            if tuple(old.get(k) for k in key) != ident:
                kept.append(old)
            elif old.get("params") != record.get("params"):
                was, now = old.get("params") or {}, record.get("params") or {}
                changed = sorted(k for k in was.keys() | now.keys() if was.get(k) != now.get(k))
                log.warning(
                    "%s: replacing the %s run recorded with other params (%s); --tag keeps both",
                    path,
                    dict(zip(key, ident, strict=True)),
                    ", ".join(changed),
                )
        kept.append(record)
        fd, tmp = tempfile.mkstemp(dir=RESULTS, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(kept, f, indent=1, default=float)
        os.replace(tmp, path)
    return path


def load_records() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in sorted(RESULTS.glob("*.json")):
        data = _read(p)
        out.extend(data if isinstance(data, list) else [data])
    return out


def median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    """Median milliseconds of `fn()` over `repeats` calls after `warmup` unrecorded ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def trained_fields(info: dict[str, Any]) -> dict[str, Any]:
    """What a record says about the model folder it measured (from its artifact.json)."""
    return {
        "train_seconds": info.get("train_seconds", 0.0),
        "model_params": info.get("params"),
        "model_metrics": {k: info.get("metrics", {}).get(k) for k in ("NDCG@10", "HR@10")},
        "n_params": info.get("n_params"),
    }


def http_call(client: Any, path: str, body: dict[str, Any] | None) -> tuple[bool, str]:
    """POST `body` (GET when None) with an httpx client: (2xx?, status and the start of the answer)."""
    import httpx

    try:
        r = client.post(path, json=body) if body is not None else client.get(path)
    except httpx.HTTPError as e:
        return False, repr(e)
    return r.is_success, f"{r.status_code} {r.text[:200]}"


# the short SASRec recipe the signal benchmarks (typed_events, cold_start) compare variants with
SHORT_SASREC: dict[str, Any] = {
    "dim": 64,
    "n_blocks": 2,
    "n_heads": 1,
    "max_len": 50,
    "batch_size": 128,
    "lr": 1e-3,
    "dropout": 0.2,
    "patience": 0,
    "warmup_epochs": 0.0,
    "verbose": False,
}
