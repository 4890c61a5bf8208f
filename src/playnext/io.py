"""Committing files and folders so that a crash never leaves a half-written one, and checksums.

Every writer in playnext (model artifacts, checkpoints, the prepared store, the text cache,
downloads) goes through here. The rule is the same everywhere: write beside the target under
a hidden temporary name, flush and fsync it, rename it into place (atomic on POSIX), then
fsync the parent folder so the rename itself survives a power cut. A reader therefore sees the
old version or the new one, never a mixture.

Files and folders get the modes `open`/`mkdir` give (0666/0777 less the umask), not
`tempfile`'s private 0600/0700 (nor the 0600 some writers, such as safetensors, leave): a model
folder or a Parquet output is as readable as any other file its writer makes, so a serving
account or a teammate can read it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_BLOCK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def sha256_text(*parts: str) -> str:
    """Hex SHA-256 of strings joined by a unit separator (a cache key for a list of texts)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(folder: str | Path) -> None:
    """Make a rename or a new entry in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fresh(folder: Path, prefix: str, suffix: str, make: Callable[[Path], None]) -> Path:
    """A new, unused name in `folder`, created by `make` (which must fail if it exists)."""
    for _ in range(100):
        path = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            make(path)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{folder}: no free temporary name for {prefix}*")  # pragma: no cover


def _create(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))


def new_file(folder: str | Path, prefix: str, suffix: str = "") -> Path:
    """An empty new file (mode 0666 less the umask), like `tempfile.mkstemp` but not private."""
    return _fresh(Path(folder), prefix, suffix, _create)


def new_dir(folder: str | Path, prefix: str) -> Path:
    """A new empty folder (mode 0777 less the umask), like `tempfile.mkdtemp` but not private."""
    return _fresh(Path(folder), prefix, "", lambda p: p.mkdir(0o777))


def _set_mode(path: Path, mode: int) -> None:
    if stat.S_IMODE(path.stat().st_mode) != mode:
        os.chmod(path, mode)


def atomic_write(path: str | Path, write: Callable[[Path], Any], *, durable: bool = True) -> Path:
    """Call `write(tmp)` on a temporary sibling of `path`, then rename it into place.

    `durable=False` skips the fsyncs: for caches that may be lost but must never be torn.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_file(path.parent, f".{path.name}.", ".tmp")
    mode = stat.S_IMODE(tmp.stat().st_mode)  # 0666 less the umask
    try:
        write(tmp)
        _set_mode(tmp, mode)  # a writer that replaced the file (safetensors does) made it 0600
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def write_text(path: str | Path, text: str, *, durable: bool = True) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"), durable=durable)


def write_json(path: str | Path, doc: Any, *, indent: int | None = 1, default: Any = None) -> Path:
    return write_text(path, json.dumps(doc, indent=indent, default=default))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(target: Path) -> None:
    """Delete leftovers of a killed `commit_dir` into `target` whose process is gone."""
    for p in target.parent.glob(f".{target.name}.*-*-*"):
        kind, _, rest = p.name[len(target.name) + 2 :].partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("partial", "old") and pid.isdigit() and not _alive(int(pid)) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def commit_dir(target: str | Path, *, check: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """A temporary sibling folder to fill; renamed to `target` when the block completes.

    If the block raises, the temporary folder is removed and `target` is untouched. An existing
    `target` is moved aside and deleted only after the new one is in place; `check(target)`
    (e.g. "refuse to replace something that is not ours") runs just before that swap. Names
    carry the writer's pid, so a later commit can sweep the leftovers of a killed one.
    """
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    tmp = new_dir(target.parent, f".{target.name}.partial-{os.getpid()}-")
    folder_mode = stat.S_IMODE(tmp.stat().st_mode)  # 0777 less the umask
    try:
        yield tmp
        for p in tmp.rglob("*"):
            if p.is_file():
                _set_mode(p, folder_mode & 0o666)
                fsync_file(p)
            elif p.is_dir():
                _set_mode(p, folder_mode)
        fsync_dir(tmp)
        if check is not None:
            check(target)
        old = None
        if target.exists():
            old = new_dir(target.parent, f".{target.name}.old-{os.getpid()}-")
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
