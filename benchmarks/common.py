"""Shared plumbing for benchmark scripts: run records, atomic result files, environment facts."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import platform
import resource
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("benchmarks")


def environment() -> dict[str, Any]:
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=RESULTS.parent,
                check=False,
            ).stdout.strip()
            or None
        )
    except OSError:
        commit = None
    return {
        "git_commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


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
