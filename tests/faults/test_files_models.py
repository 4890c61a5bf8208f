"""Model files on disk under a live server: edited in place, written with the umask, mismatched.

- Truncating the served `weights.safetensors` (what `cp` over a live folder or `rsync --inplace`
  does) used to kill the server with SIGBUS: the weights were memory-mapped. They are read
  into memory now, so the file can change under a running process.
- Model folders and Parquet outputs follow the umask (they were 0700/0600 whatever it was).
- A weights file that does not match `model.json` names the file, the model and the tensor.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from playnext.artifact import Artifact
from playnext.data.interactions import Interactions
from playnext.errors import ConfigError


def test_truncating_the_served_weights_in_place_does_not_kill_the_server(
    serve: Callable[..., Any], model_dirs: dict[str, Path], fault_world: Interactions, tmp_path: Path
) -> None:
    live = tmp_path / "models" / "live"
    shutil.copytree(model_dirs["ease"], live)
    server = serve("--model-dir", live)
    history = [str(i) for i in fault_world.items.external.to_list()[:3]]
    before = server.post("/recommend", json={"history": history, "k": 5, "explain": True})
    assert before.status_code == 200
    for f in live.iterdir():  # every file of the folder, as `truncate -s 0` or a copy over it does
        os.truncate(f, 0)
    after = server.post("/recommend", json={"history": history, "k": 5, "explain": True})
    assert after.status_code == 200, server.log_text()
    assert [i["item_id"] for i in after.json()["items"]] == [i["item_id"] for i in before.json()["items"]]
    assert server.alive() and server.get("/health").status_code == 200
    # a similar-items call touches the item-item weights everywhere
    r = server.get(f"/items/{history[0]}/similar", params={"k": 50})
    assert r.status_code == 200 and server.alive(), server.log_text()


SAVE = textwrap.dedent(
    """
    import sys
    from playnext.artifact import Artifact
    from playnext.batch import Job, recommend_all
    src, out = sys.argv[1], sys.argv[2]
    Artifact.load(src).save(out + "/model")
    recommend_all(out + "/model", out + "/recs.parquet", Job(k=3))
    """
)


@pytest.mark.parametrize(("umask", "folder", "file"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_model_folders_and_parquet_outputs_follow_the_umask(
    model_dirs: dict[str, Path], tmp_path: Path, umask: int, folder: int, file: int
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run(
        [sys.executable, "-c", SAVE, str(model_dirs["popular"]), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(umask),  # the child's umask is what is tested
    )
    assert r.returncode == 0, r.stderr
    model = out / "model"
    assert stat.S_IMODE(model.stat().st_mode) == folder
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in model.iterdir()}
    assert set(modes) >= {"model.json", "weights.safetensors", "items.parquet", "histories.safetensors"}
    assert modes == dict.fromkeys(modes, file)
    assert stat.S_IMODE((out / "recs.parquet").stat().st_mode) == file


def test_weights_that_do_not_match_the_config_say_which_and_why(
    model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(model_dirs["ease"], mixed)
    shutil.copy(model_dirs["popular"] / "weights.safetensors", mixed / "weights.safetensors")
    with pytest.raises(ConfigError) as e:
        Artifact.load(mixed)
    msg = str(e.value)
    assert "weights.safetensors" in msg and "ease" in msg and "'B'" in msg and "counts" in msg, msg
    r = subprocess.run(
        [sys.executable, "-m", "playnext.cli", "serve", "--model-dir", str(mixed), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PLAYNEXT_TEXT_ENCODER": "hashing"},
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "does not match" in r.stderr and "'B'" in r.stderr
