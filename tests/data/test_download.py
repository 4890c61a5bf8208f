"""Downloads are checked by sha256 before use and never leave half-written files in the cache."""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from playnext.data import download as dl
from playnext.data.readers import load_dataset
from playnext.errors import DataError

U_DATA = "1\t10\t4\t300\n2\t10\t5\t100\n1\t20\t3\t200\n"


def make_zip(path: Path, members: dict[str, str]) -> dl.Source:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return dl.Source(path.as_uri(), hashlib.sha256(path.read_bytes()).hexdigest())


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_verified_download_is_extracted_atomically(tmp_path: Path) -> None:
    source = make_zip(tmp_path / "ml-100k.zip", {"ml-100k/u.data": U_DATA, "ml-100k/README": "x"})
    cache = tmp_path / "cache"
    target = dl.fetch_source(source, cache / "ml-100k")
    assert target == cache / "ml-100k"
    assert (target / "u.data").read_text() == U_DATA  # the single top folder is flattened
    assert leftovers(cache) == []
    assert '"verified": true' in (target / dl.PROVENANCE_FILE).read_text()
    # a second call finds the folder and does not download again
    (tmp_path / "ml-100k.zip").unlink()
    assert dl.fetch_source(source, cache / "ml-100k") == target


def test_flat_archives_are_kept_as_they_are(tmp_path: Path) -> None:
    source = make_zip(tmp_path / "lastfm.zip", {"user_artists.dat": "x", "artists.dat": "y"})
    target = dl.fetch_source(source, tmp_path / "cache" / "lastfm-2k")
    assert (target / "user_artists.dat").is_file() and (target / "artists.dat").is_file()


def test_checksum_mismatch_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    source = make_zip(tmp_path / "a.zip", {"ml-100k/u.data": U_DATA})
    bad = dl.Source(source.url, "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(dl.DownloadError, match="checksum mismatch") as info:
        dl.fetch_source(bad, cache / "ml-100k")
    assert isinstance(info.value, DataError) and info.value.path == source.url
    assert list(cache.iterdir()) == []


def test_unpinned_download_needs_explicit_consent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = make_zip(tmp_path / "a.zip", {"u.data": U_DATA})
    unpinned = dl.Source(source.url, None)
    calls: list[str] = []
    real = dl.urllib.request.urlopen

    def counting(url: str, **kwargs: Any) -> Any:
        calls.append(url)
        return real(url, **kwargs)

    monkeypatch.setattr(dl.urllib.request, "urlopen", counting)
    with pytest.raises(dl.DownloadError, match="allow_unverified"):
        dl.fetch_source(unpinned, tmp_path / "cache" / "x")
    assert calls == [] and not (tmp_path / "cache" / "x").exists()
    target = dl.fetch_source(unpinned, tmp_path / "cache" / "x", allow_unverified=True)
    assert calls == [source.url] and (target / "u.data").is_file()
    assert '"verified": false' in (target / dl.PROVENANCE_FILE).read_text()


def test_failed_transfer_and_bad_archives_leave_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(dl.DownloadError, match="download failed"):
        missing = dl.Source((tmp_path / "missing.zip").as_uri(), None)
        dl.fetch_source(missing, cache / "x", allow_unverified=True)
    not_zip = tmp_path / "not.zip"
    not_zip.write_text("hello")
    with pytest.raises(dl.DownloadError, match="not a valid zip"):
        dl.fetch_source(dl.Source(not_zip.as_uri(), None), cache / "x", allow_unverified=True)
    evil = make_zip(tmp_path / "evil.zip", {"../evil.txt": "boom"})
    with pytest.raises(dl.DownloadError, match="unsafe path"):
        dl.fetch_source(evil, cache / "x")
    assert list(cache.iterdir()) == [] and not (tmp_path / "evil.txt").exists()


def test_cache_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dl.CACHE_ENV, str(tmp_path / "env"))
    assert dl.cache_root() == tmp_path / "env"
    assert dl.dataset_dir("ml-1m", tmp_path / "arg") == tmp_path / "arg" / "ml-1m"
    monkeypatch.delenv(dl.CACHE_ENV)
    assert dl.cache_root() == Path.home() / ".cache" / "playnext"


def test_load_dataset_downloads_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = make_zip(tmp_path / "ml-100k.zip", {"ml-100k/u.data": U_DATA})
    monkeypatch.setitem(dl.SOURCES, "ml-100k", source)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="download=True"):
        load_dataset("ml-100k", cache_dir=cache)
    data = load_dataset("ml-100k", cache_dir=cache, download=True)
    assert data.stats()["interactions"] == 3
    (tmp_path / "ml-100k.zip").unlink()  # from now on the cache is enough
    assert len(load_dataset("ml-100k", cache_dir=cache)) == 3


def test_steam_has_no_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"Kaggle.*--path"):
        dl.locate("steam-200k", tmp_path, download=True)
    with pytest.raises(DataError, match="Kaggle"):
        dl.fetch("steam-200k", tmp_path)


def test_the_table_pins_every_official_archive() -> None:
    names = {"ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "ml-latest"}
    assert set(dl.SOURCES) == names | {"lastfm-2k"}
    for name, source in dl.SOURCES.items():
        assert source.url.startswith("https://files.grouplens.org/datasets/"), name
        assert source.sha256 is not None and re.fullmatch(r"[0-9a-f]{64}", source.sha256), name
