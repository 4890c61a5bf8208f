"""`serve()` — what `playnext serve` calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from playnext.artifact import Artifact
from playnext.errors import ConfigError
from playnext.serve import cli


def test_serve_builds_the_app_and_binds_loopback(
    artifact: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = artifact.save(tmp_path / "model")
    calls: dict[str, Any] = {}

    def fake_run(app: Any, host: str, port: int, log_level: str, **options: Any) -> None:
        calls.update(app=app, host=host, port=port, **options)

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setenv("PLAYNEXT_TEXT_ENCODER", "hashing")
    cli.serve(saved, "127.0.0.1", 8123, "tok")
    assert calls["host"] == "127.0.0.1" and calls["port"] == 8123
    assert calls["app"].state.settings.token == "tok"
    assert calls["app"].state.settings.text_encoder == "hashing"
    # the connection limits: a request deadline (the protocol), idle keep-alive, a connection cap
    assert calls["http"].keywords == {"timeout_request": 10.0, "max_header_bytes": 32 * 1024}
    assert calls["timeout_keep_alive"] == 5 and calls["limit_concurrency"] == 1024


def test_serve_rejects_a_non_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.json"):
        cli.serve(tmp_path, "127.0.0.1", 8000, None)


def test_several_workers_get_the_protocol_by_name() -> None:
    """A class object in uvicorn's config is unpickled in each spawned worker, importing torch
    before the worker answers the supervisor's 5 s health pings: on a busy machine the workers
    were killed and respawned in a loop. By name it is imported with the app."""
    from playnext.serve.protocol import DeadlineProtocol, server_options
    from playnext.serve.settings import Settings

    http = server_options(Settings(workers=2))["http"]
    assert http == "playnext.serve.protocol:DeadlineProtocol"
    module, name = http.split(":")
    assert getattr(__import__(module, fromlist=[name]), name) is DeadlineProtocol
