"""Admin swaps published once, under unique versions; every worker converges to `current`.

Two `POST /admin/model` in the same second for two folders with the same name (`a/model`,
`b/model`) used to collide on the version name (the second + the folder name): the second
answered 422, yet its worker had already swapped locally, so the two workers served different
models for good. Now each swap is published under its own version before any worker switches,
and every worker serves what `current` points at within 2 s.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from playnext.artifact import current_model, publish

TOKEN = "fault-token"  # the fault suite's servers run with PLAYNEXT_TOKEN=fault-token


def _agree(server: Any, root: Path) -> tuple[bool, list[dict[str, Any]]]:
    """Whether every worker answering 8 new connections serves `current`'s version."""
    target = current_model(root)
    model = json.loads((target / "model.json").read_text())["model"]
    healths = server.healths(8)
    ok = all(h.get("model") == model and str(h["serving"]["path"]).endswith(target.name) for h in healths)
    return ok, healths


def _converged(server: Any, root: Path, workers: int) -> tuple[float | None, list[dict[str, Any]]]:
    """Seconds from `current`'s re-pointing until the last worker switched to it (each worker's
    `serving.loaded_at`, so slow /health calls on a busy machine do not count), or None when
    they do not all serve it within 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ok, healths = _agree(server, root)
        loaded = {h["pid"]: h["serving"]["loaded_at"] for h in healths}
        if ok and len(loaded) == workers:
            return max(loaded.values()) - (root / "current").lstat().st_mtime, healths
        time.sleep(0.1)
    return None, healths


def test_two_admin_swaps_in_the_same_second_leave_every_worker_on_current(
    serve: Callable[..., Any], model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    publish(model_dirs["ease"], root, "v1")
    server = serve("--model-root", root, "--workers", "2", env={"PLAYNEXT_SWAP_POLL_SECONDS": "0.5"})
    server.worker_pids(2)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers: dict[str, httpx.Response] = {}
    go = threading.Barrier(2)

    def swap(name: str) -> None:
        go.wait()
        answers[name] = httpx.post(
            server.url + "/admin/model", json={"model_dir": str(model_dirs[name])}, headers=auth, timeout=60
        )

    threads = [threading.Thread(target=swap, args=(n,)) for n in ("popular", "ease")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {n: r.status_code for n, r in answers.items()} == {"popular": 200, "ease": 200}, {
        n: r.text for n, r in answers.items()
    }
    versions = sorted(p.name for p in (root / "versions").iterdir())
    assert len(versions) == 3, versions  # v1 and one version per swap: nothing overwritten
    took, healths = _converged(server, root, workers=2)
    assert took is not None and took <= 2.0, (took, current_model(root).name, healths)
    time.sleep(1.0)  # and it stays so
    ok, healths = _agree(server, root)
    assert ok, healths


def test_a_refused_admin_swap_changes_nothing_anywhere(
    serve: Callable[..., Any], model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    publish(model_dirs["ease"], root, "v1")
    broken = tmp_path / "broken" / "model"
    broken.mkdir(parents=True)
    (broken / "model.json").write_text(json.dumps({"model": "ease", "config": {}, "n_items": 3}))
    server = serve("--model-root", root, "--workers", "2", env={"PLAYNEXT_SWAP_POLL_SECONDS": "0.5"})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = server.post("/admin/model", json={"model_dir": str(broken)}, headers=auth)
    assert r.status_code == 422 and "refused" in r.json()["detail"]
    assert current_model(root).name == "v1"
    assert sorted(p.name for p in (root / "versions").iterdir()) == ["v1"]
    healths = server.healths(8)
    assert all(h["model"] == "ease" and h["serving"]["path"].endswith("v1") for h in healths), healths
