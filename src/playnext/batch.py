"""Every user's top-k to one Parquet file: bounded memory, resumable after a kill, on any number of
processes.

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

Several processes (`playnext recommend --all-users --nproc N`, or the same command under
torchrun; from Python, `recommend_all` inside an initialised torch.distributed group) write ONE
parts folder. Rank 0 alone checks (or starts) the manifest and lists the parts already
committed; the others wait for that list (a broadcast, which also carries rank 0's refusal to
every rank). The parts still missing are dealt round-robin: the j-th missing part goes to rank
j % world. Part boundaries depend on the users and the chunk size only, and the manifest holds no
world size, so a run stopped on N processes resumes on any number of them. Every rank then
waits for the others (a barrier), and rank 0 concatenates and removes the folder. Each part is
the same computation whichever rank makes it, so the file's rows are byte for byte those of a
one-process run — given the same threads per process (float sums depend on the thread count),
as with `--nproc N` on N·t cores against one process with t threads. On several machines OUT
must be on a filesystem they share, with flock working across them (Linux NFS clients emulate
it); the ranks exchange only control messages (gloo is enough).

Two runs never interleave. `.lock` is held exclusively by rank 0 (or the only process) for the
whole run: a second run's rank 0 is refused, and its other ranks get that refusal from it.
`.ranks` is held shared by every other rank while it writes, and rank 0 takes it exclusively
once at the start: if a run's rank 0 dies while its other ranks still write, a new run is
refused until they are gone. The finished folder is removed while `.lock` is still held; a run
that had opened the removed `.lock` finds another file at its path and takes that one instead.

Rows: `user_id` (external), `rank` (1..k), `item_id` (external), `score` (float32), one per
(user, rank), users in the model folder's order. With `exclude_seen` a user's own history is
masked by the one ranking path (`playnext.ranking`, through `Artifact.rank`); a user with fewer than
k candidates left (one who has seen almost everything) gets fewer than k rows.

A model trained with the request's time (`uses_request_time`) is asked every user's question at
one time: `Job.at` (`--at`), else when the run started. The manifest keeps it, so a resumed run
without `--at` goes on at the same time, and one with another `--at` is refused as another run.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch.distributed as dist

from playnext.artifact import Artifact
from playnext.data.request_time import now
from playnext.errors import ConfigError, PlaynextError
from playnext.io import atomic_write, sha256_file, sha256_text, write_json
from playnext.rerank import RerankSpec
from playnext.train import distributed

MANIFEST = "manifest.json"
LOCK = ".lock"  # rank 0's, exclusive, for the whole run
RANKS = ".ranks"  # the other ranks', shared, while they write parts
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
T = TypeVar("T")


class ResumeMismatchError(PlaynextError):
    """A parts folder left by a run with other arguments or another model."""


@dataclass(frozen=True)
class Job:
    """What a batch run computes; its manifest is this plus the model's fingerprint."""

    k: int
    exclude_seen: bool = True
    chunk_users: int = 0  # 0: as many as keep one chunk's scores under SCORE_BYTES (≤ 512)
    rerank: RerankSpec | None = None  # applied to each user's scores, as `/recommend` applies it
    at: int | None = None  # unix seconds every list is asked at (None: when the run starts)

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
    ranks: int = 1  # the processes that wrote the parts
    at: int | None = None  # when the lists were asked, for a model trained with the request's time


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

    Inside a torch.distributed group every rank calls this alike and writes its share of the
    parts; rank 0 writes `out`, and every rank returns the same `Done` (module docstring).
    `progress(users_done, users_total)` is called after each part this rank computes, counting
    the parts reused and this rank's share; `on_part(index)` after each part this rank computes
    (a hook: tests stop a run there). A parts folder from another job or model is an error
    unless `restart`, which discards it.
    """
    job.validate()
    t0 = time.perf_counter()
    rank, world = distributed.group()
    model_dir = Path(model_dir)
    out = Path(out).resolve()
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; --out names the Parquet file to write")
    art = Artifact.load(model_dir)
    n_users, n_items = len(art.users), len(art.items)
    chunk = chunk_size(job, n_items)
    n_parts = -(-n_users // chunk)
    work = parts_dir(out)

    def users_in(parts: list[int]) -> int:
        return sum(min(n_users, (i + 1) * chunk) - i * chunk for i in parts)

    def start() -> tuple[list[int], int | None]:  # rank 0: lock, the manifest, the parts done
        locks.exclusive()
        at = _asked_at(work, job, art.model.uses_request_time, restart)
        _prepare(work, out, _manifest(art, model_dir, job, chunk, at), restart)
        return sorted(_existing_parts(work, n_parts)), at

    def finish() -> int:  # rank 0, every part committed: the file, then the folder (still locked)
        rows = _concatenate(work, n_parts, out)
        shutil.rmtree(work, ignore_errors=True)
        return rows

    locks = _Locks(work)
    try:
        reused, at = _on_rank_0(start, rank, world)
        if rank != 0:
            locks.shared()
        missing = sorted(set(range(n_parts)) - set(reused))
        mine = missing[rank::world]  # round-robin: the j-th missing part is rank j % world's
        users_done, users_total = users_in(reused), users_in(reused) + users_in(mine)
        if progress is not None:
            progress(users_done, users_total)
        item_ids = art.items.external.to_arrow().cast(pa.string())
        user_ids = art.users.external.to_arrow().cast(pa.string())
        for i in mine:
            lo, hi = i * chunk, min(n_users, (i + 1) * chunk)
            _write_part(work / _part_name(i), _top_k(art, np.arange(lo, hi), job, at, user_ids, item_ids))
            users_done += hi - lo
            if on_part is not None:
                on_part(i)
            if progress is not None:
                progress(users_done, users_total)
        if world > 1:
            dist.barrier()  # every rank's parts are committed
            if rank != 0:
                locks.release()
        rows = _on_rank_0(finish, rank, world)
    finally:
        locks.release()
    return Done(out, n_users, rows, n_parts, len(reused), time.perf_counter() - t0, world, at)


def _asked_at(work: Path, job: Job, reads_time: bool, restart: bool) -> int | None:
    """The one time every list of a run is asked at, for a model trained with the request's time
    (None for any other: its lists do not depend on it): `job.at`, else the time a resumed run
    started with (its manifest's), else now — so that a resumed file is one snapshot."""
    if not reads_time:
        return None
    if job.at is not None:
        return job.at
    try:
        found = json.loads((work / MANIFEST).read_text()).get("at") if not restart else None
    except (OSError, ValueError, AttributeError):
        found = None
    return found if isinstance(found, int) and not isinstance(found, bool) else now()


def _manifest(art: Artifact, model_dir: Path, job: Job, chunk: int, at: int | None) -> dict[str, Any]:
    """What the parts hold; no world size, so that any number of processes may resume them."""
    return {
        "version": MANIFEST_VERSION,
        "model_fingerprint": fingerprint(model_dir),
        "model": art.model.name,
        "k": job.k,
        "exclude_seen": job.exclude_seen,
        "rerank": job.rerank.describe() if job.rerank is not None and job.rerank.active else None,
        "chunk_users": chunk,
        "n_users": len(art.users),
        "n_items": len(art.items),
        "at": at,  # None unless the model reads the request's time
    }


def _on_rank_0(fn: Callable[[], T], rank: int, world: int) -> T:
    """`fn()` run by rank 0 alone; every rank returns its result, or raises when it failed (the
    other ranks wait for it: the broadcast is their barrier)."""
    if world == 1:
        return fn()
    box: list[Any] = [None, None]  # [result, rank 0's error message]
    failure: BaseException | None = None
    if rank == 0:
        try:
            box[0] = fn()
        except BaseException as e:  # the others must not wait for a result that never comes
            failure, box[1] = e, str(e) or type(e).__name__
    dist.broadcast_object_list(box, src=0)
    if failure is not None:
        raise failure
    if box[1] is not None:
        raise PlaynextError(f"rank 0: {box[1]}")
    result: T = box[0]
    return result


def _top_k(
    art: Artifact, users: np.ndarray, job: Job, at: int | None, user_ids: pa.Array, item_ids: pa.Array
) -> pa.Table:
    """The long-format rows of `users`' top-k, best first, asked at `at`, through the one ranking
    path."""
    when = at if at is not None else job.at  # a model that ignores the time: any value will do
    lists = art.rank(users, k=job.k, exclude_seen=job.exclude_seen, rerank=job.rerank, at=when)
    row_of, rank_of, items, scores = lists.long()  # users in order, ranks ascending
    return pa.table(
        {
            "user_id": user_ids.take(pa.array(users[row_of])),
            "rank": pa.array(rank_of.astype(np.int16)),
            "item_id": item_ids.take(pa.array(items)),
            "score": pa.array(scores.astype(np.float32)),
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


class _Locks:
    """The parts folder's two flocks (module docstring), released by `release` or at exit."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.held: list[IO[str]] = []

    def exclusive(self) -> None:
        """Rank 0's: `.lock` for the whole run, and `.ranks` once, or refuse (never wait)."""
        while True:
            self.work.mkdir(parents=True, exist_ok=True)
            try:
                lock = open(self.work / LOCK, "a")  # noqa: SIM115 - held until `release`
            except FileNotFoundError:  # a run that finished removed the folder just now
                continue
            self.held.append(lock)
            if not _flock(lock, fcntl.LOCK_EX):
                raise PlaynextError(f"{self.work}: another batch run is writing this output")
            if _is_at(lock, self.work / LOCK):
                break
            self.release()  # a finished run removed this file after we opened it: take the new one
        with open(self.work / RANKS, "a") as ranks:
            if not _flock(ranks, fcntl.LOCK_EX):
                raise PlaynextError(
                    f"{self.work}: ranks of an earlier batch run, whose rank 0 has gone, are still "
                    "writing this output"
                )

    def shared(self) -> None:
        """Another rank's, while it writes parts: taken once rank 0 holds `.lock`, so it never waits."""
        ranks = open(self.work / RANKS, "a")  # noqa: SIM115 - held until `release`
        self.held.append(ranks)
        fcntl.flock(ranks, fcntl.LOCK_SH)

    def release(self) -> None:
        for f in self.held:
            f.close()
        self.held.clear()


def _flock(f: IO[str], kind: int) -> bool:
    try:
        fcntl.flock(f, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _is_at(f: IO[str], path: Path) -> bool:
    """Whether the open file `f` is still the file at `path` (not one removed since it was opened)."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(f.fileno())
    return (mine.st_dev, mine.st_ino) == (found.st_dev, found.st_ino)


def _prepare(work: Path, out: Path, manifest: dict[str, Any], restart: bool) -> None:
    """The parts folder, under rank 0's lock: emptied with `restart`, checked against (or started
    with) `manifest`, and swept of the files whose writer was killed mid-write."""
    if restart:  # under the lock: never pull the folder from under a running writer
        for p in work.iterdir():
            if p.name not in (LOCK, RANKS):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    _check_manifest(work, manifest)
    # a part, or the final file's temporary sibling; no other rank has started yet
    for tmp in [*work.glob(".part-*.tmp"), *out.parent.glob(f".{out.name}.*.tmp")]:
        tmp.unlink(missing_ok=True)


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
