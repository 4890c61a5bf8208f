"""`playnext serve` start-up: the port checked before the model loads, one line per slow step on
stderr, nothing loaded twice, no text encoder for items without text, and /docs that works
offline (Swagger UI's assets served locally, not from a CDN)."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from playnext.artifact import Artifact
from playnext.serve import engine as engine_module
from playnext.serve.engine import Engine, Query
from playnext.serve.errors import TextOff
from playnext.serve.settings import Settings
from playnext.state import StateStore
from playnext.text import HashingEncoder, TextEncoder

PLAYNEXT = [sys.executable, "-c", "from playnext.cli import main; main()"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PLAYNEXT_TEXT_ENCODER="hashing",
        PLAYNEXT_CACHE_DIR=str(tmp_path / "cache"),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_port_in_use_is_refused_before_the_model_loads(artifact: Artifact, tmp_path: Path) -> None:
    model = artifact.save(tmp_path / "model")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [*PLAYNEXT, "serve", "--model-dir", str(model), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            env=_env(tmp_path),
        )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert str(port) in lines[0] and "in use" in lines[0]
    assert "model" not in done.stderr.replace(str(model), "")  # nothing was loaded first
    assert not (tmp_path / "state").exists()  # nor the state store opened


def test_start_up_steps_each_say_how_long_they_took(artifact: Artifact, tmp_path: Path) -> None:
    model = artifact.save(tmp_path / "model")
    port = _free_port()
    proc = subprocess.Popen(
        [*PLAYNEXT, "serve", "--model-dir", str(model), "--port", str(port)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=_env(tmp_path),
    )
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line.rstrip())
            if "Application startup complete" in line or "Uvicorn running" in line:
                break
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = "\n".join(seen)
    steps = [line for line in seen if "serve: " in line]
    timed = re.compile(r"serve: .* in \d+\.\d s")
    assert all(timed.search(line) for line in steps), text
    for what in (
        "model .* loaded and checked in",
        r"state store \(sqlite\) opened and checked in",
        r"model \S+ loaded in",
        r"text index of [\d,]+ items in \d+\.\d s \(",
    ):
        assert any(re.search(what, line) for line in steps), f"{what!r} missing from:\n{text}"


def test_docs_work_offline(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200
        html = r.text
        assert "http://" not in html and "https://" not in html, html
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        urls += re.findall(r"""url:\s*['"]([^'"]+)['"]""", html)
        assert urls, html
        for url in urls:
            assert url.startswith("/"), url
            assert client.get(url).status_code == 200, url
    assert any(
        url.endswith("swagger-ui-bundle.js")
        for url in re.findall(r"src=\"([^\"]+)\"", client.get("/docs").text)
    )


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_are_not_in_the_schema(client: TestClient, page: str) -> None:
    assert page not in client.get("/openapi.json").json()["paths"]


def _with_titles(artifact: Artifact, titled: Callable[[int], bool]) -> Artifact:
    """The artifact as id-only data makes it (each item titled by its id, nothing else), except
    the items `titled` keeps their own title."""
    ids = artifact.items.external.to_list()
    real = artifact.meta.get_column("title").to_list()
    meta = pl.DataFrame(
        {
            "item_id": ids,
            "title": [real[i] if titled(i) else ids[i] for i in range(len(ids))],
            "genres": [[] for _ in ids],
            "year": pl.Series([None] * len(ids), dtype=pl.Int32),
            "kind": pl.Series([None] * len(ids), dtype=pl.String),
        }
    )
    return dataclasses.replace(artifact, meta=meta)


def test_an_id_only_catalog_loads_no_encoder_and_encodes_nothing(
    artifact: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 12k-item catalog of ids once paid for loading MiniLM and encoding 12k placeholder texts
    (the ids) at every start with an empty cache: 36 s of a 41 s start-up (issue #31)."""

    def no_encoder(kind: str) -> TextEncoder:
        raise AssertionError(f"the {kind} encoder was loaded for a catalog of ids")

    monkeypatch.setattr(engine_module, "make_encoder", no_encoder)
    ids_only = _with_titles(artifact, lambda i: False)
    engine = Engine(ids_only, Settings(text_encoder="minilm"), StateStore.open(tmp_path))
    assert engine.encoder is None and engine.text_index is None and engine.n_texted == 0
    with pytest.raises(TextOff, match="ids only"):
        engine.search("space", Query(), None)
    assert engine.recommend(Query(history=[ids_only.items.external[0]], k=3))  # the model serves


class _Counting(HashingEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.seen += list(texts)
        return super().encode(texts)


def test_only_items_with_text_are_encoded(artifact: Artifact, tmp_path: Path) -> None:
    half = _with_titles(artifact, lambda i: i % 2 == 0)
    enc = _Counting()
    engine = Engine(half, Settings(text_encoder="hashing"), StateStore.open(tmp_path), enc)
    titles = half.meta.get_column("title").to_list()
    assert enc.seen == titles[::2] and engine.n_texted == len(titles[::2])
    index = engine.text_index
    assert index is not None and len(index) == len(titles)
    assert not index.vectors[1::2].any() and (np.linalg.norm(index.vectors[::2], axis=1) > 0.99).all()
    found = engine.search(titles[4], Query(k=1), None)
    assert found[0]["item_id"] == half.items.external[4]


def test_serve_loads_the_model_and_opens_the_store_once(
    artifact: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`playnext serve` checked the model and the store, then the app loaded and opened both
    again (issue #30): the app now serves what the check loaded, on the store it opened."""
    import uvicorn

    from playnext.serve import cli
    from playnext.state import store as store_module

    model = artifact.save(tmp_path / "model")
    loads: list[Path] = []
    opens: list[str] = []
    real_load, real_init = Artifact.load.__func__, store_module.StateStore.__init__  # type: ignore[attr-defined]

    def load(cls: type[Artifact], directory: str | Path) -> Artifact:
        loads.append(Path(directory))
        return real_load(cls, directory)  # type: ignore[no-any-return]

    def init(self: StateStore, url: str, *args: Any, **kw: Any) -> None:
        opens.append(url)
        real_init(self, url, *args, **kw)

    def run(app: Any, **_: Any) -> None:
        with TestClient(app) as c:
            assert c.get("/health").status_code == 200

    monkeypatch.setattr(Artifact, "load", classmethod(load))
    monkeypatch.setattr(store_module.StateStore, "__init__", init)
    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setenv("PLAYNEXT_TEXT_ENCODER", "hashing")
    monkeypatch.setenv("PLAYNEXT_CACHE_DIR", str(tmp_path / "cache"))
    cli.serve(model, "127.0.0.1", 0, None, state=str(tmp_path / "state"))
    assert len(loads) == 1 and len(opens) == 1, (loads, opens)
