"""`playnext serve` start-up: the port checked before the model loads, one line per slow step on
stderr, and /docs that works offline (Swagger UI's assets served locally, not from a CDN)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from playnext.artifact import Artifact

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
        "state store checked in",
        "state store .* opened in",
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
