"""Every user's top-k to one Parquet file: bounded memory, resumable after a kill.

    OUT.parts/manifest.json        what the parts were computed for (model fingerprint, k, …)
    OUT.parts/part-000000.parquet  users [0, chunk) — each part committed atomically
    OUT                            the parts concatenated in user order, renamed into place last

Users are scored `chunk_users` at a time through the model's own `score`, so memory holds one
chunk's (chunk, n_items) scores, never all users'. Each chunk's rows are committed as a part of
their own (`playnext.io.atomic_write`): a run killed at any instant leaves whole parts and
perhaps a temporary file, and a rerun with the same arguments skips the parts it finds. The
manifest makes that safe — parts computed for another model, k or chunking are refused rather
than mixed in. The final file is written part by part (one part in memory), renamed into place,
and only then is the parts folder removed.

Rows: `user_id` (external), `rank` (1..k), `item_id` (external), `score` (float32), one per
(user, rank), users in the model folder's order. With `exclude_seen` a user's own history is
masked as in `Artifact.recommend`; items left at -inf (a user who has seen almost everything)
are not written, so such a user has fewer than k rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from playnext.artifact import Artifact
from playnext.errors import ConfigError, PlaynextError
from playnext.io import atomic_write, sha256_file, sha256_text, write_json
from playnext.rerank import RerankSpec, rerank_rows

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
SCORE_BYTES = 1 << 28  # one chunk's (users, items) float32 scores stay under 256 MiB
MAX_CHUNK_USERS = 512
# the files that decide what a part holds: the model, the user order, the items and histories
FINGERPRINTED = (
    "model.json",
    "weights.safetensors",
    "users.parquet",
    "items.parquet",
    "histories.safetensors",
)
SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("rank", pa.int16()),
        ("item_id", pa.string()),
        ("score", pa.float32()),
    ]
)
_PART = re.compile(r"part-(\d{6})\.parquet")


class ResumeMismatchError(PlaynextError):
    """A parts folder left by a run with other arguments or another model."""


@dataclass(frozen=True)
class Job:
    """What a batch run computes; its manifest is this plus the model's fingerprint."""

    k: int
    exclude_seen: bool = True
    chunk_users: int = 0  # 0: as many as keep one chunk's scores under SCORE_BYTES (≤ 512)
    rerank: RerankSpec | None = None  # applied to each user's scores, as `/recommend` applies it

    def validate(self) -> None:
        if not 1 <= self.k <= np.iinfo(np.int16).max:
            raise ConfigError(f"k must be in 1..{np.iinfo(np.int16).max}, got {self.k}")
        if self.chunk_users < 0:
            raise ConfigError(f"chunk_users must be >= 0 (0 = automatic), got {self.chunk_users}")


@dataclass(frozen=True)
class Done:
    path: Path
    users: int
    rows: int
    parts: int
    parts_reused: int
    seconds: float


def fingerprint(model_dir: str | Path) -> str:
    """SHA-256 over the model folder's files that decide the output (any retrain changes it)."""
    folder = Path(model_dir)
    return sha256_text(*(f"{name}:{sha256_file(folder / name)}" for name in FINGERPRINTED))


def chunk_size(job: Job, n_items: int) -> int:
    if job.chunk_users:
        return job.chunk_users
    return int(max(1, min(MAX_CHUNK_USERS, SCORE_BYTES // (4 * max(1, n_items)))))


def parts_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".parts")


def recommend_all(
    model_dir: str | Path,
    out: str | Path,
    job: Job,
    *,
    restart: bool = False,
    progress: Callable[[int, int], None] | None = None,
    on_part: Callable[[int], None] | None = None,
) -> Done:
    """Write every user's top-k to `out` (Parquet), resuming a killed run with the same job.

    `progress(users_done, users_total)` is called after each part (reused ones included);
    `on_part(index)` after each part this call computes (a hook: tests stop a run there).
    A parts folder from another job or model is an error unless `restart`, which discards it.
    """
    job.validate()
    t0 = time.perf_counter()
    model_dir = Path(model_dir)
    out = Path(out).resolve()
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; --out names the Parquet file to write")
    art = Artifact.load(model_dir)
    n_users, n_items = len(art.users), len(art.items)
    chunk = chunk_size(job, n_items)
    manifest = {
        "version": MANIFEST_VERSION,
        "model_fingerprint": fingerprint(model_dir),
        "model": art.model.name,
        "k": job.k,
        "exclude_seen": job.exclude_seen,
        "rerank": job.rerank.describe() if job.rerank is not None and job.rerank.active else None,
        "chunk_users": chunk,
        "n_users": n_users,
        "n_items": n_items,
    }
    work = parts_dir(out)
    n_parts = -(-n_users // chunk)
    with _locked(work, out, manifest, restart):
        done = _existing_parts(work, n_parts)
        users_done = sum(min(n_users, (i + 1) * chunk) - i * chunk for i in done)
        if progress is not None:
            progress(users_done, n_users)
        item_ids = art.items.external.to_arrow().cast(pa.string())
        user_ids = art.users.external.to_arrow().cast(pa.string())
        for i in range(n_parts):
            if i in done:
                continue
            lo, hi = i * chunk, min(n_users, (i + 1) * chunk)
            table = _top_k(art, np.arange(lo, hi), job, user_ids, item_ids)
            _write_part(work / _part_name(i), table)
            users_done += hi - lo
            if on_part is not None:
                on_part(i)
            if progress is not None:
                progress(users_done, n_users)
        rows = _concatenate(work, n_parts, out)
    shutil.rmtree(work, ignore_errors=True)
    return Done(out, n_users, rows, n_parts, len(done), time.perf_counter() - t0)


def _top_k(art: Artifact, users: np.ndarray, job: Job, user_ids: pa.Array, item_ids: pa.Array) -> pa.Table:
    """The long-format rows of `users`' top-k, best first (scores from the model's own `score`)."""
    hist = art.histories.take(users)
    scores = art.model.score(users, hist)  # (B, I)
    if job.exclude_seen and len(hist.items):
        rows = torch.from_numpy(hist.row_ids())
        scores[rows, torch.from_numpy(hist.items.astype(np.int64))] = float("-inf")
    if job.rerank is not None and job.rerank.active:
        lists = rerank_rows(scores, hist, art.features(), job.rerank, job.k)  # (B, k), -1 padded
        picked = torch.from_numpy(np.maximum(lists, 0))
        values, indices = scores.gather(1, picked).numpy(), lists  # each item's model score
        keep = lists >= 0
    else:
        top = torch.topk(scores, min(job.k, scores.shape[1]), dim=1)  # (B, k)
        values, indices = top.values.numpy(), top.indices.numpy()
        keep = np.isfinite(values)  # (B, k) seen items never appear, even when k exceeds the rest
    row_of, rank_of = np.nonzero(keep)  # row-major: users in order, ranks ascending
    return pa.table(
        {
            "user_id": user_ids.take(pa.array(users[row_of])),
            "rank": pa.array((rank_of + 1).astype(np.int16)),
            "item_id": item_ids.take(pa.array(indices[keep])),
            "score": pa.array(values[keep].astype(np.float32)),
        },
        schema=SCHEMA,
    )


def _write_part(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def _concatenate(work: Path, n_parts: int, out: Path) -> int:
    """Stream the parts, in order, into `out` (one part in memory at a time); returns the rows."""
    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        with pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
            for i in range(n_parts):
                table = pq.read_table(work / _part_name(i), schema=SCHEMA)
                writer.write_table(table)
                rows += table.num_rows

    atomic_write(out, write)
    return rows


@contextlib.contextmanager
def _locked(work: Path, out: Path, manifest: dict[str, Any], restart: bool) -> Iterator[None]:
    """The parts folder, checked against (or started with) `manifest`, held under a lock so a
    second run on the same output fails instead of interleaving parts."""
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PlaynextError(f"{work}: another batch run is writing this output") from None
        if restart:  # under the lock: never pull the folder from under a running writer
            for p in work.iterdir():
                if p.name != ".lock":
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
        _check_manifest(work, manifest)
        # files whose writer was killed mid-write: a part, or the final file's temporary sibling
        for tmp in [*work.glob(".part-*.tmp"), *out.parent.glob(f".{out.name}.*.tmp")]:
            tmp.unlink(missing_ok=True)
        yield


def _check_manifest(work: Path, manifest: dict[str, Any]) -> None:
    path = work / MANIFEST
    if not path.exists():
        if any(_PART.fullmatch(p.name) for p in work.iterdir()):
            raise ResumeMismatchError(f"{work}: parts without a {MANIFEST}; rerun with --restart")
        write_json(path, manifest)
        return
    try:
        found = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ResumeMismatchError(f"{path}: unreadable ({e}); rerun with --restart") from None
    differ = sorted(k for k in manifest.keys() | found.keys() if manifest.get(k) != found.get(k))
    if differ:
        shown = ", ".join(f"{k}: {_short(found.get(k))} → {_short(manifest.get(k))}" for k in differ)
        raise ResumeMismatchError(
            f"{work} holds parts of another run ({shown}); rerun with the same arguments to resume, "
            "or with --restart to discard them"
        )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 20 else text[:13] + "…'"


def _existing_parts(work: Path, n_parts: int) -> set[int]:
    found = {int(m.group(1)) for p in work.iterdir() if (m := _PART.fullmatch(p.name))}
    return {i for i in found if i < n_parts}


def _part_name(i: int) -> str:
    return f"part-{i:06d}.parquet"
