"""`playnext export --format onnx`: onnxruntime scores what PyTorch scores (≤ 1e-4) for the
sequence models, on histories of every length (empty, padded, longer than max_len); other
models and a failed check are refused with exit code 2 and leave no file behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from playnext import export
from playnext.artifact import Artifact
from playnext.cli import app
from playnext.data.interactions import Histories
from playnext.data.synthetic import generate_world
from playnext.models.base import Recommender
from playnext.models.registry import create

runner = CliRunner()
QUIET = {"verbose": False, "patience": 0, "warmup_epochs": 0.0, "epochs": 1, "batch_size": 64}
MAX_LEN = 12
TINY: dict[str, dict[str, Any]] = {
    "sasrec": {"dim": 16, "max_len": MAX_LEN, "n_heads": 2, **QUIET},
    "hstu": {"dim": 16, "max_len": MAX_LEN, "n_negatives": 32, **QUIET},  # with a time bias
    "hstu-request": {"dim": 16, "max_len": MAX_LEN, "n_negatives": 32, "time_reference": "request", **QUIET},
    "hstu-untimed": {"dim": 16, "max_len": MAX_LEN, "n_negatives": 32, "time_bias": False, **QUIET},
    "gru4rec": {"dim": 16, "hidden": 24, "n_layers": 2, "max_len": MAX_LEN, **QUIET},
    "caser": {"dim": 8, "max_len": 4, "n_h": 2, "n_v": 2, **QUIET},
    "ease": {"l2": 50.0},
    # a content tower travels inside the graph: its feature buffers become constants
    "sasrec-content": {"dim": 16, "max_len": MAX_LEN, "item_features": ["genres", "year"], **QUIET},
    "gru4rec-content": {"dim": 16, "hidden": 24, "max_len": MAX_LEN, "item_features": ["genres"], **QUIET},
}


@pytest.fixture(scope="module")
def world() -> Any:
    return generate_world(n_users=120, n_items=150, seed=0)


def saved(kind: str, world: Any, root: Path) -> Path:
    model = create(kind.split("-")[0], **TINY[kind]).fit(world)
    return Artifact.from_data(model, world, {"model": model.name}).save(root / kind)


def random_histories(n_items: int, n: int, seed: int) -> Histories:
    """Empty rows, rows shorter than max_len (padded), exactly max_len, and longer (cropped)."""
    rng = np.random.default_rng(seed)
    lengths = [0, 1, MAX_LEN - 1, MAX_LEN, MAX_LEN + 7, *rng.integers(0, 2 * MAX_LEN, size=n - 5)]
    return Histories.from_lists([rng.integers(0, n_items, size=int(m)) for m in lengths])


@pytest.mark.parametrize(
    "kind",
    [
        "sasrec",
        "hstu",
        "hstu-request",
        "hstu-untimed",
        "gru4rec",
        "caser",
        "sasrec-content",
        "gru4rec-content",
    ],
)
def test_onnxruntime_scores_equal_torch(kind: str, world: Any, tmp_path: Path) -> None:
    model_dir = saved(kind, world, tmp_path)
    r = runner.invoke(app, ["export", "--model-dir", str(model_dir), "--format", "onnx", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    path = model_dir / "model.onnx"
    assert info["path"] == str(path) and path.is_file()
    assert json.loads((model_dir / "model.onnx.json").read_text()) == {
        k: v for k, v in info.items() if k != "path"
    }
    assert info["max_abs_diff"] <= export.TOLERANCE * info["score_scale"] and info["n_checked"] == 120
    assert isinstance(info["opset"], int) and info["outputs"][0]["shape"][1] == 150
    names = [i["name"] for i in info["inputs"]]
    expected = {
        "hstu": ["items", "times"],
        "hstu-request": ["items", "times", "at"],
        "caser": ["users", "items"],
    }
    assert names == expected.get(kind, ["items"]) and info["request_time"] == (kind == "hstu-request")

    art = Artifact.load(model_dir)
    model: Recommender = art.model
    graph = export.GRAPHS[model.name](model)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    anonymous = random_histories(150, 40, seed=1)
    known = np.array([0, 3, 57, 119])
    for users, rows in (
        (np.full(len(anonymous), -1), anonymous),  # ad-hoc histories, no stored times
        (known, art.histories.take(known)),  # users with stored histories (and HSTU times)
        (known[:1], art.histories.take(known[:1])),  # a batch of one: the batch axis is dynamic
    ):
        want = model.score(users, rows).numpy()
        (got,) = session.run(["scores"], graph.feed(users, rows))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, float(np.abs(want).max())), rtol=0)


def test_the_request_time_is_an_input_of_a_request_time_graph(world: Any, tmp_path: Path) -> None:
    """Issue #32: the graph of a model trained with the request's time reads `at`; its scores at
    two times differ, and each equals `Recommender.score` asked at that time."""
    model_dir = saved("hstu-request", world, tmp_path)
    done = export.export_onnx(model_dir, check_users=32)
    assert (
        done.info["request_time"] and done.info["max_abs_diff"] <= export.TOLERANCE * done.info["score_scale"]
    )
    art = Artifact.load(model_dir)
    model = art.model
    graph = export.GRAPHS[model.name](model)
    session = ort.InferenceSession(str(done.path), providers=["CPUExecutionProvider"])
    users = np.arange(8)
    rows = art.histories.take(users)
    last = model.times_for(users, rows, MAX_LEN)[:, -1]  # type: ignore[attr-defined]
    got = {}
    for gap in (0, 30 * 86_400):
        asked = rows.with_at(last + gap)
        (got[gap],) = session.run(["scores"], graph.feed(users, asked))
        want = model.score(users, asked).numpy()
        np.testing.assert_allclose(got[gap], want, atol=1e-4 * max(1.0, float(np.abs(want).max())), rtol=0)
    assert np.abs(got[0] - got[30 * 86_400]).max() > 1e-3


def test_other_models_are_refused_naming_the_supported_ones(world: Any, tmp_path: Path) -> None:
    model_dir = saved("ease", world, tmp_path)
    r = runner.invoke(app, ["export", "--model-dir", str(model_dir), "--format", "onnx"])
    assert r.exit_code == 2
    assert "ease" in r.output and "sasrec" in r.output and "gru4rec" in r.output and "hstu" in r.output
    assert not (model_dir / "model.onnx").exists()
    r = runner.invoke(app, ["export", "--model-dir", str(model_dir), "--format", "tflite"])
    assert r.exit_code == 2 and "only onnx" in r.output


def test_a_model_trained_with_typed_events_is_refused(typed_model_dir: Path) -> None:
    """Its graph would read every event as untyped: scores unlike the serving path's, so no file."""
    r = runner.invoke(app, ["export", "--model-dir", str(typed_model_dir), "--format", "onnx"])
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and "trained with typed events (actions=true)" in said, r.output
    assert not (typed_model_dir / "model.onnx").exists()


def test_an_export_that_disagrees_with_torch_is_refused_and_removed(
    world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = saved("sasrec", world, tmp_path)
    out = tmp_path / "elsewhere" / "sasrec.onnx"
    first = export.export_onnx(model_dir, out, check_users=16)
    assert first.path == out and out.exists() and first.info["n_checked"] == 16
    original = Recommender.score

    def drifted(self: Recommender, users: np.ndarray, history: Histories) -> torch.Tensor:
        return original(self, users, history) + 1e-3  # as if the graph and PyTorch disagreed

    monkeypatch.setattr(Recommender, "score", drifted)
    r = runner.invoke(
        app, ["export", "--model-dir", str(model_dir), "--out", str(out), "--check-users", "16"]
    )
    assert r.exit_code == 2
    assert "differ from PyTorch" in r.output and "nothing exported" in r.output
    assert not out.exists() and not out.with_name("sasrec.onnx.json").exists()
    assert [p.name for p in out.parent.iterdir()] == []  # no temporary file either
