"""Loop pieces that the contract test does not pin down: schedule, config checks, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from playnext.errors import ConfigError
from playnext.train.averaging import WeightAverage
from playnext.train.checkpoints import Checkpointer
from playnext.train.config import TrainConfig
from playnext.train.device import resolve_device
from playnext.train.schedule import lr_factor


def test_warmup_then_cosine_and_time_budget() -> None:
    assert lr_factor(0, 10, 110, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 10, 110, "cosine") == pytest.approx(1.0)
    assert lr_factor(60, 10, 110, "cosine") == pytest.approx(0.5)
    assert lr_factor(110, 10, 110, "linear") == pytest.approx(0.0)
    assert lr_factor(50, 0, 100, "constant") == 1.0
    # with a wall-clock budget the decay follows whichever is further along
    assert lr_factor(10, 0, 100, "linear", time_fraction=0.75) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "bad",
    [
        {"epochs": 0},
        {"lr": 0.0},
        {"optimizer": "sgd"},
        {"schedule": "step"},
        {"amp": "fp8"},
        {"device": "tpu"},
        {"resume": True},
        {"eval_every": 0},
    ],
)
def test_train_config_rejects(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        TrainConfig(**bad).validate_training()  # type: ignore[arg-type]


def test_checkpoint_roundtrip_and_foreign_checkpoint(tmp_path: Path) -> None:
    net = nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    Checkpointer(tmp_path, {"model": "a"}).save(1, net, None, opt, {"epoch": 1})
    meta, tensors = Checkpointer(tmp_path, {"model": "a"}).load() or ({}, {})
    assert meta["epoch"] == 1 and torch.equal(tensors["model/weight"], net.weight)
    assert any(k.startswith("optim/") for k in tensors)
    with pytest.raises(ConfigError, match="another model"):
        Checkpointer(tmp_path, {"model": "b"}).load()
    assert Checkpointer(tmp_path / "empty", {}).load() is None
    assert resolve_device("cpu").type == "cpu"


def test_weight_average_matches_the_recursion_and_restores_live_weights() -> None:
    net = nn.Linear(2, 1, bias=False)
    ema = WeightAverage(net, decay=0.5)
    expected = net.weight.detach().clone()
    for t in range(1, 6):
        with torch.no_grad():
            net.weight.fill_(float(t))
        ema.update()
        d = min(0.5, (1 + t) / (10 + t))  # the ramp caps the decay early on
        expected = d * expected + (1 - d) * float(t)
    assert torch.allclose(ema.tensors()["weight"], expected)
    with ema.applied():
        assert torch.equal(net.weight, ema.tensors()["weight"])
    assert torch.equal(net.weight, torch.full((1, 2), 5.0))  # the live weights are back
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(ema_decay=1.0).validate_training()
