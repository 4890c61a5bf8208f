"""Fetch the official dataset archives into a local cache, trusted only once their sha256 matches.

The archive is streamed into a temporary file inside the cache and hashed on the way; only a
verified archive is extracted, into a temporary folder that is then renamed into place. So an
interrupted, truncated or tampered download never leaves a half-written dataset behind, and a
dataset folder in the cache is complete by construction.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from playnext.errors import DataError

CACHE_ENV = "PLAYNEXT_CACHE"
PROVENANCE_FILE = ".playnext-download.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """Where a dataset's official archive lives and what its bytes must hash to."""

    url: str
    sha256: str | None
    size: int | None = None
    # who published the checksum, so a reader can re-check the pin
    checksum_from: str = ""


_ML = "https://files.grouplens.org/datasets/movielens"
_TFDS = "tensorflow/datasets tensorflow_datasets/url_checksums/movielens.txt"
_OMNIREC = "ISG-Siegen/OmniRec src/omnirec/data_loaders"

SOURCES: dict[str, Source] = {
    "ml-100k": Source(
        f"{_ML}/ml-100k.zip",
        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        4_924_029,
        _TFDS,
    ),
    "ml-1m": Source(
        f"{_ML}/ml-1m.zip",
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        5_917_549,
        f"{_TFDS}; tensorflow/examples; secretflow",
    ),
    "ml-10m": Source(
        f"{_ML}/ml-10m.zip",
        "813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862",
        65_566_137,
        f"{_OMNIREC}/movielens_small.py (GroupLens MD5 ce571fd55effeba0271552578f2648bd)",
    ),
    "ml-20m": Source(
        f"{_ML}/ml-20m.zip",
        "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
        198_702_078,
        _TFDS,
    ),
    "ml-25m": Source(
        f"{_ML}/ml-25m.zip",
        "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
        261_978_986,
        _TFDS,
    ),
    "ml-32m": Source(
        f"{_ML}/ml-32m.zip",
        "e4a68655d7386b8f95f2f2424b2ff975dfdd15ffd59e0d864a14dca43e99d6ee",
        238_950_008,
        "several independent projects pinning the GroupLens archive",
    ),
    # ml-latest*: rolling 'development' releases; the pins are of the snapshots named here
    "ml-latest-small": Source(
        f"{_ML}/ml-latest-small.zip",
        "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        978_202,
        f"{_TFDS} (2018-09 snapshot, 100,836 ratings)",
    ),
    "ml-latest": Source(
        f"{_ML}/ml-latest.zip",
        "66a9e518c747d76b241d9a859b001a2619d3ed1672ceef599eb50daf73a7b4a3",
        None,
        f"{_OMNIREC}/movielens_large.py (2023-07 snapshot)",
    ),
    "lastfm-2k": Source(
        "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
        "6738f48195667ff03caaab4d32ca9a3133d8cc026b7c3cdaf6ce1010e913c59c",
        2_589_075,
        f"{_OMNIREC}/hetrec_lastfm.py and independent projects",
    ),
}

# datasets that exist only behind a login: the user downloads them and passes --path
MANUAL: dict[str, str] = {
    "steam-200k": (
        "steam-200k has no official direct download (Kaggle needs a login): download "
        "steam-200k.csv from https://www.kaggle.com/datasets/tamber/steam-video-games and pass "
        "its path (--path FILE_OR_FOLDER)"
    ),
}


class DownloadError(DataError):
    """A download that failed or could not be trusted; nothing was left in the cache."""


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache folder: the argument, else $PLAYNEXT_CACHE, else ~/.cache/playnext."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "playnext"


def dataset_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where `name` lives once downloaded (it may not exist yet)."""
    return cache_root(cache_dir) / name


def locate(
    name: str,
    cache_dir: str | Path | None = None,
    *,
    download: bool = False,
    allow_unverified: bool = False,
) -> Path:
    """The cached folder of `name`, downloading it first when asked; a clear error otherwise."""
    if name in MANUAL:
        raise DataError(MANUAL[name])
    if name not in SOURCES:
        raise DataError(f"{name} reads a file you provide: pass its path (--path)")
    target = dataset_dir(name, cache_dir)
    if target.is_dir():
        return target
    if not download:
        raise DataError(
            f"{name} is not in the cache: pass the folder with its original files (--path), or "
            f"download=True (CLI: --option download=true) to fetch {SOURCES[name].url} into it",
            path=target,
        )
    return fetch(name, cache_dir, allow_unverified=allow_unverified)


def fetch(name: str, cache_dir: str | Path | None = None, *, allow_unverified: bool = False) -> Path:
    """Download, verify and extract the official archive of `name`; returns its folder."""
    if name in MANUAL:
        raise DataError(MANUAL[name])
    if name not in SOURCES:
        raise DataError(f"no download is known for {name!r}; known: {', '.join(sorted(SOURCES))}")
    return fetch_source(SOURCES[name], dataset_dir(name, cache_dir), allow_unverified=allow_unverified)


def fetch_source(source: Source, target: Path, *, allow_unverified: bool = False) -> Path:
    """Download `source` into the folder `target` (atomically); a no-op if `target` exists."""
    if target.is_dir():
        return target
    if source.sha256 is None and not allow_unverified:
        # refuse before touching the network: an unpinned archive could be anything
        raise DownloadError(
            f"no sha256 is pinned for {source.url}, so a download could not be verified; "
            "refusing it. Pass allow_unverified=True (--option allow_unverified=true) to accept "
            "an unverified archive, or download it yourself and pass --path",
            path=source.url,
        )
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    fd, part_name = tempfile.mkstemp(dir=root, prefix=f".{target.name}-", suffix=".part")
    part = Path(part_name)
    staging: Path | None = None
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _stream(source.url, out)
        if source.sha256 is not None and digest != source.sha256.lower():
            raise DownloadError(
                f"checksum mismatch: expected sha256 {source.sha256}, got {digest}; the download was "
                "discarded (a changed or corrupted archive is never used)",
                path=source.url,
            )
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{target.name}-extract-"))
        content = _extract(part, staging, source.url)
        (content / PROVENANCE_FILE).write_text(
            json.dumps({"url": source.url, "sha256": digest, "verified": source.sha256 is not None}) + "\n"
        )
        try:
            content.rename(target)
        except OSError:
            if not target.is_dir():  # not a concurrent download that won the race
                raise
        return target
    finally:
        part.unlink(missing_ok=True)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _stream(url: str, out: IO[bytes]) -> str:
    """Copy `url` into `out`, returning the sha256 of what was written."""
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DownloadError(f"download failed: {e}", path=url) from None
    return h.hexdigest()


def _extract(archive: Path, staging: Path, url: str) -> Path:
    """Unzip into `staging`; returns the dataset folder (the archive's single top folder, if any)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [m.filename for m in zf.infolist()]
            for name in names:
                parts = PurePosixPath(name.replace("\\", "/")).parts
                if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                    raise DownloadError(f"unsafe path in archive: {name!r}", path=url)
            zf.extractall(staging)
    except zipfile.BadZipFile as e:
        raise DownloadError(f"not a valid zip archive: {e}", path=url) from None
    tops = {PurePosixPath(n).parts[0] for n in names if n.strip("/")} - {"__MACOSX"}
    if len(tops) == 1:
        (top,) = tops
        if (staging / top).is_dir():
            return staging / top
    return staging
