"""Check a live SQLite write-ahead log against what its processes committed.

A running SQLite never re-reads the checksums of its WAL: readers find pages through the shared
index (`-shm`), so bytes of a committed frame damaged on disk go unnoticed while the server runs.
Only recovery — the first open after a crash — verifies the checksum chain, and it treats the
first bad frame as the log's end: every commit from there on vanishes without an error.

`verify_wal` does recovery's check early: the frames the shared index says are committed
(`mxFrame`) must carry the log's salts and an unbroken checksum chain ending at the checksum the
index recorded. It reads the committed part of the log once (at most a few MiB with SQLite's
1000-page autocheckpoint) and checksums it with numpy. Formats: https://www.sqlite.org/walformat.html
"""

from __future__ import annotations

import os
import struct
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

WAL_MAGIC = 0x377F0682  # | 1: checksums over big-endian words
WAL_VERSION = 3007000
WAL_HEADER = 32
FRAME_HEADER = 24
SHM_HEADER = 48  # one copy of the wal-index header; two copies at offsets 0 and 48
_MASK = 0xFFFFFFFF


@dataclass(frozen=True)
class WalState:
    """What the shared index says was committed: frames, the last frame's checksum, the salts."""

    frames: int
    checksum: tuple[int, int]
    salts: bytes
    page_size: int


class Pinned:
    """Read-only descriptors of a live SQLite's files, opened once and closed only by `close()`.

    Closing any descriptor of a file drops every POSIX lock the process holds on it — SQLite's
    too: a check that opened and closed `state.db` or its `-shm` released the server's shared
    locks, so another process's connection took itself for the last one, ran recovery and
    deleted the log. A descriptor is replaced (never closed) when the path names a new file."""

    def __init__(self) -> None:
        self._fds: dict[str, tuple[int, tuple[int, int]]] = {}
        self._old: list[int] = []

    def fd(self, path: str) -> int:
        """A descriptor of the file at `path` now (OSError as `os.stat` raises it)."""
        st = os.stat(path)
        have = self._fds.get(path)
        if have is not None and have[1] == (st.st_dev, st.st_ino):
            return have[0]
        fd = os.open(path, os.O_RDONLY)
        if have is not None:
            self._old.append(have[0])
        st = os.fstat(fd)
        self._fds[path] = (fd, (st.st_dev, st.st_ino))
        return fd

    def close(self) -> None:
        """Only once SQLite's connections to these files are closed."""
        for fd in [*self._old, *(fd for fd, _ in self._fds.values())]:
            os.close(fd)
        self._fds.clear()
        self._old.clear()


def _read(pinned: Pinned | None, path: str, n: int) -> bytes:
    if pinned is not None:
        return os.pread(pinned.fd(path), n, 0)
    with open(path, "rb") as f:  # a process without SQLite connections to the file
        return f.read(n)


def shared_index(db: Path, pinned: Pinned | None = None) -> WalState | None:
    """The `-shm` header of `db` when it is readable and its two copies agree (None otherwise:
    no WAL in use, or a writer in the middle of updating it)."""
    try:
        raw = _read(pinned, f"{db}-shm", 2 * SHM_HEADER)
    except OSError:
        return None
    if len(raw) < 2 * SHM_HEADER or raw[:SHM_HEADER] != raw[SHM_HEADER:]:
        return None
    bo = "<" if sys.byteorder == "little" else ">"  # the index is in the host's byte order
    version, _, _, is_init, _, sz, mx, _, c0, c1 = struct.unpack(bo + "3IBBH2I2I", raw[:32])
    if version != WAL_VERSION or not is_init:
        return None
    page_size = 65536 if sz == 1 else (sz & 0xFF00) | ((sz & 1) << 16)
    return WalState(mx, (c0, c1), raw[32:40], page_size)


def verify_wal(db: Path) -> str | None:
    """None when the log at `db`-wal holds every frame the shared index calls committed, intact;
    otherwise what a restart after a crash would lose, in one sentence."""
    return WalGuard(db).check()


class WalGuard:
    """`verify_wal` for one process, again and again at the cost of a comparison: within one
    generation of the log (its salts) committed frames never change, so the bytes verified last
    time are kept and compared, and only the frames appended since (by any process) are
    checksummed. Call it while holding SQLite's write lock: no frame is appended, and the log
    not restarted, while it reads."""

    def __init__(self, db: Path, pinned: Pinned | None = None, keep_bytes: int = 64 << 20) -> None:
        self.db = db
        self.pinned = pinned  # required in a process with SQLite connections to `db`
        self.keep_bytes = keep_bytes  # a log larger than this is checksummed whole every time
        self._seen = b""  # the log's header and the frames verified, as read then
        self._sum = (0, 0)  # the checksum chain's state at the end of `_seen`

    def check(self) -> str | None:
        state = shared_index(self.db, self.pinned)
        if state is None or state.frames == 0:
            return None
        size = FRAME_HEADER + state.page_size
        want = WAL_HEADER + state.frames * size
        try:
            data = _read(self.pinned, f"{self.db}-wal", want)
        except FileNotFoundError:
            return f"the write-ahead log (-wal) was deleted with {state.frames} committed frames in it"
        except OSError as e:
            return f"the write-ahead log cannot be read ({e.strerror})"
        if len(data) < WAL_HEADER:
            return f"the write-ahead log was truncated ({len(data)} bytes, {state.frames} committed frames)"
        seen = self._seen
        if seen and seen[16:24] == state.salts:  # the same generation: what was verified cannot change
            done = (len(seen) - WAL_HEADER) // size
            if done > state.frames:
                return (
                    f"the write-ahead log was cut short: {state.frames} committed frames where there "
                    f"were {done}; the commits in the last {done - state.frames} are gone"
                )
            if data[: len(seen)] != seen:
                if data[:WAL_HEADER] != seen[:WAL_HEADER]:
                    return "the write-ahead log's header changed on disk (overwritten)"
                at = [WAL_HEADER + k * size for k in range(done)]
                first = next(k for k, i in enumerate(at) if data[i : i + size] != seen[i : i + size])
                return _lost(first + 1, state.frames, "changed on disk")
            start, s = (len(seen) - WAL_HEADER) // size, self._sum
        else:
            magic, version, page_size, _, _, _ = struct.unpack(">6I", data[:24])
            if magic & ~1 != WAL_MAGIC or version != WAL_VERSION or page_size != state.page_size:
                return "the write-ahead log's header is not SQLite's (overwritten or replaced)"
            s = _checksum(np.frombuffer(data[:24], self._order(data)), (0, 0))
            if s != struct.unpack(">2I", data[24:32]) or data[16:24] != state.salts:
                return "the write-ahead log's header fails its checksum (overwritten or replaced)"
            start = 0
        n = (len(data) - WAL_HEADER) // size
        if n > start:  # the frames appended since the last check
            frames = np.frombuffer(data, np.uint8, (n - start) * size, WAL_HEADER + start * size)
            frames = frames.reshape(n - start, size)
            heads = frames[:, :FRAME_HEADER].copy().view(">u4")  # page, db size, salt 1, 2, checksum 1, 2
            words = np.concatenate([frames[:, :8], frames[:, FRAME_HEADER:]], axis=1)
            sums = _frame_sums(words.view(self._order(data)).astype(np.uint64))
            a = _power(words.shape[1] // 8)  # a frame's words, as pairs, advance the state by A^pairs
            salts = np.frombuffer(state.salts, ">u4")
            for i in range(n - start):
                s = (
                    (int(a[0, 0]) * s[0] + int(a[0, 1]) * s[1] + int(sums[i, 0])) & _MASK,
                    (int(a[1, 0]) * s[0] + int(a[1, 1]) * s[1] + int(sums[i, 1])) & _MASK,
                )
                if tuple(heads[i, 2:4]) != tuple(salts) or (int(heads[i, 4]), int(heads[i, 5])) != s:
                    return _lost(start + i + 1, state.frames, "fails its checksum")
        if n < state.frames:
            return _lost(n + 1, state.frames, "is missing (the log was truncated)")
        if s != state.checksum:
            return _lost(state.frames, state.frames, "is not the one committed")
        self._seen, self._sum = (data, s) if len(data) <= self.keep_bytes else (b"", (0, 0))
        return None

    @staticmethod
    def _order(data: bytes) -> str:
        return ">u4" if data[3] & 1 else "<u4"  # the magic's low bit: big-endian checksum words


def _lost(frame: int, frames: int, what: str) -> str:
    return (
        f"frame {frame} of the {frames} committed in the write-ahead log {what}: "
        f"a crash or kill now would drop it and the {frames - frame} after it at the next start"
    )


def _checksum(words: np.ndarray, s: tuple[int, int]) -> tuple[int, int]:
    """SQLite's WAL checksum, the plain loop (for the 6 header words)."""
    s0, s1 = s
    for i in range(0, len(words), 2):
        s0 = (s0 + int(words[i]) + s1) & _MASK
        s1 = (s1 + int(words[i + 1]) + s0) & _MASK
    return s0, s1


def _frame_sums(words: np.ndarray) -> np.ndarray:
    """Each frame's own part of the checksum: the loop is linear mod 2^32, each pair of words
    (x, y) maps the state s to A s + B (x, y) with A = [[1, 1], [1, 2]], B = [[1, 0], [1, 1]],
    so a frame adds sum_k A^(P-1-k) B (x_k, y_k) to A^P s. Integer overflow wraps mod 2^64,
    which keeps the value mod 2^32."""
    coef = _coefficients(words.shape[1] // 2)  # (P, 2, 2)
    pairs = words.reshape(words.shape[0], -1, 2)  # (F, P, 2)
    out = np.empty((words.shape[0], 2), np.uint64)
    for r in range(2):
        out[:, r] = pairs[:, :, 0] @ coef[:, r, 0] + pairs[:, :, 1] @ coef[:, r, 1]
    return out & np.uint64(_MASK)


@lru_cache(maxsize=4)
def _coefficients(pairs: int) -> np.ndarray:
    b = np.array([[1, 0], [1, 1]], dtype=object)
    out = np.empty((pairs, 2, 2), np.uint64)
    m = np.array([[1, 0], [0, 1]], dtype=object)  # A^(P-1-k), from k = P-1 down
    for k in range(pairs - 1, -1, -1):
        out[k] = (m.dot(b) % (1 << 32)).astype(np.uint64)
        m = _mul(m)
    return out


@lru_cache(maxsize=4)
def _power(pairs: int) -> np.ndarray:
    """A^P mod 2^32, P the pairs of words in one frame."""
    m = np.array([[1, 0], [0, 1]], dtype=object)
    for _ in range(pairs):
        m = _mul(m)
    return m


def _mul(m: np.ndarray) -> np.ndarray:
    a = np.array([[1, 1], [1, 2]], dtype=object)
    return np.asarray(m.dot(a) % (1 << 32))
