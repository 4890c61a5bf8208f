"""Budgets that hold and progress that shows: the loop on a task whose every step sleeps.

`SlowTask` makes the clock predictable enough: each optimiser step takes at least `SLEEP`
seconds, so an epoch of 100 steps outlasts a 0.02-minute (1.2 s) budget many times over. The
asserts on seconds are sanity bounds with generous margins (shared cores), not timings.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from playnext.data.interactions import Histories
from playnext.train import progress
from playnext.train.config import TrainConfig
from playnext.train.loop import Batch, TrainReport, train

SLEEP = 0.03  # seconds per step
BUDGET_MIN = 0.02  # 1.2 s
MARGIN_S = 3.0  # one batch plus one validation, with room for a loaded machine


class SlowTask:
    """A linear regression whose steps sleep: `steps` batches of 8 rows an epoch."""

    def __init__(self, net: nn.Module, steps: int, sleep: float = SLEEP) -> None:
        self.net, self.steps, self.sleep = net, steps, sleep

    def train_batches(
        self, rng: np.random.Generator, batch_size: int, rank: int, world_size: int
    ) -> Iterator[Batch]:
        for _ in range(self.steps):
            yield {"x": torch.from_numpy(rng.standard_normal((8, 4)).astype(np.float32))}

    def steps_per_epoch(self, batch_size: int, world_size: int) -> int:
        return self.steps

    def train_loss(self, batch: Batch) -> torch.Tensor:
        time.sleep(self.sleep)
        x = batch["x"]  # (B, 4)
        return (self.net(x).squeeze(-1) - x.sum(-1)).pow(2).mean()

    def loss_terms(self, batch: Batch) -> int:
        return len(batch["x"])

    def score(self, users: np.ndarray, history: Histories) -> torch.Tensor:
        raise NotImplementedError


class Validator:
    """Scores each validation by `scores(call)` and remembers the weights it saw."""

    def __init__(self, net: nn.Module, rising: bool) -> None:
        self.net, self.rising = net, rising
        self.seen: list[tuple[float, dict[str, torch.Tensor]]] = []

    def __call__(self) -> float:
        score = float(len(self.seen)) if self.rising else -float(len(self.seen))
        self.seen.append((score, {k: v.clone() for k, v in self.net.state_dict().items()}))
        return score


def fit(
    steps: int,
    *,
    epochs: int = 3,
    minutes: float = BUDGET_MIN,
    validate: bool | str = True,
    verbose: bool = False,
    sleep: float = SLEEP,
    started: float | None = None,
    **cfg: object,
) -> tuple[nn.Module, TrainReport, Validator | None]:
    torch.manual_seed(0)
    net = nn.Linear(4, 1)
    v = Validator(net, rising=validate == "rising") if validate else None
    fields: dict[str, Any] = {"patience": 0, **cfg}
    config = TrainConfig(epochs=epochs, max_minutes=minutes, verbose=verbose, **fields)
    task = SlowTask(net, steps, sleep)
    report = train(net, task, config, seed=0, validate=v, fingerprint={"t": steps}, started=started)
    return net, report, v


def test_budget_stops_mid_epoch_within_one_batch_and_one_validation() -> None:
    t0 = time.perf_counter()
    _, report, v = fit(steps=200)  # one epoch ≈ 200 × 0.03 s = 6 s ≫ 1.2 s
    wall = time.perf_counter() - t0
    assert report.stopped == "budget" and report.epochs == 1
    at = report.stopped_at
    assert at["epoch"] == 1 and at["steps"] == 200
    assert 1 <= at["step"] < 200  # mid-epoch
    assert 60 * BUDGET_MIN - MARGIN_S <= at["seconds"] <= 60 * BUDGET_MIN  # the next step would overrun
    assert report.train_seconds < 60 * BUDGET_MIN + MARGIN_S and wall < 60 * BUDGET_MIN + 2 * MARGIN_S
    assert v is not None and len(v.seen) == 1  # the partial epoch was validated
    (row,) = report.history
    assert row["fraction"] == pytest.approx(at["step"] / 200) and "valid_NDCG@10" in row
    assert row["elapsed"] == pytest.approx(report.train_seconds)


def test_budget_stops_before_a_step_that_would_end_past_it() -> None:
    # 0.25 s steps against a 1.2 s budget: stopping after the step that crosses the budget (the
    # old rule) ends at ≥ 1.25 s; the next step's expected end is checked instead
    _, report, _ = fit(steps=50, sleep=0.25, validate=False)
    assert report.stopped == "budget"
    assert report.stopped_at["seconds"] <= 60 * BUDGET_MIN
    assert report.stopped_at["step"] >= 2


def test_budget_counts_the_set_up_before_the_loop() -> None:
    # a fit whose set-up (vocabularies, batches) took 0.9 s of a 1.2 s budget has ~0.3 s left
    _, report, _ = fit(steps=200, validate=False, started=time.perf_counter() - 0.9)
    assert report.stopped == "budget"
    assert 0.9 <= report.stopped_at["seconds"] <= 60 * BUDGET_MIN
    assert report.stopped_at["step"] < 0.6 / SLEEP  # ~10 steps of 0.03 s, not the ~40 a whole budget holds
    assert report.train_seconds >= 0.9  # the record's seconds include the set-up


@pytest.mark.parametrize("rising", [True, False], ids=["partial-epoch-best", "first-epoch-best"])
def test_budget_stop_keeps_the_best_validated_weights(rising: bool) -> None:
    # 4-step epochs (≈ 0.12 s): several whole epochs, then the budget stops one
    net, report, v = fit(steps=4, epochs=200, validate="rising" if rising else "falling")
    assert report.stopped == "budget" and 2 <= report.epochs < 200
    assert v is not None and len(v.seen) == report.epochs
    best = max(range(len(v.seen)), key=lambda i: v.seen[i][0])
    assert best == (len(v.seen) - 1 if rising else 0)
    assert report.best_epoch == best + 1
    for k, t in net.state_dict().items():
        assert torch.equal(t, v.seen[best][1][k])


def test_without_validation_the_last_weights_are_kept() -> None:
    net, report, _ = fit(steps=200, validate=False)
    assert report.stopped == "budget" and report.best_epoch == -1
    assert "valid_NDCG@10" not in report.history[0]
    torch.manual_seed(0)
    assert not torch.equal(net.state_dict()["weight"], nn.Linear(4, 1).weight)  # trained: the last


def test_stops_record_why() -> None:
    _, report, _ = fit(steps=2, epochs=2, minutes=0.0)
    assert report.stopped == "epochs" and report.stopped_at == {
        "epoch": 2,
        "step": 2,
        "steps": 2,
        "seconds": pytest.approx(report.stopped_at["seconds"]),
    }
    _, report, _ = fit(steps=2, epochs=20, minutes=0.0, validate="falling", patience=2)
    assert report.stopped == "patience" and report.epochs == 3 and report.stopped_early


def test_projected_overrun_is_said_once_at_the_start(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="playnext.train"):
        fit(steps=200)
    lines = [r.getMessage() for r in caplog.records if "one epoch ≈" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert "> the 0.02-minute budget: training stops at the budget mid-epoch" in lines[0]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="playnext.train"):
        fit(steps=5, epochs=1, minutes=5.0)  # an epoch well inside the budget: nothing said
    assert "one epoch ≈" not in caplog.text


def test_a_budget_stop_is_finished_for_resume(tmp_path: Path) -> None:
    ckpt = str(tmp_path / "ckpt")
    net, report, _ = fit(steps=200, checkpoint_dir=ckpt)
    assert report.stopped == "budget"
    again, resumed, v = fit(steps=200, checkpoint_dir=ckpt, resume=True)
    assert v is not None and not v.seen  # nothing trained or validated again
    assert (resumed.stopped, resumed.stopped_at, resumed.history) == (
        report.stopped,
        report.stopped_at,
        report.history,
    )
    for k, t in net.state_dict().items():
        assert torch.equal(t, again.state_dict()[k])


def test_long_epochs_get_a_line_within_them(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "FIRST_LINE_S", 0.1)
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.2)
    with caplog.at_level(logging.INFO, logger="playnext.train"):
        fit(steps=30, epochs=1, minutes=0.0, verbose=True)  # pytest's stderr is no terminal: lines
    messages = [r.getMessage() for r in caplog.records]
    within = [m for m in messages if m.startswith("epoch 1/1  step ")]
    assert within and "samples/s" in within[0]
    (line,) = [m for m in messages if m.startswith("epoch 1/1  loss ")]
    assert "valid NDCG@10" in line and "stopped: epochs" in line


SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from test_budget import fit
fit(steps=4, epochs=3, minutes=0.0, verbose=True)
"""


def test_piped_stderr_gets_one_line_per_epoch() -> None:
    here = str(Path(__file__).resolve().parent)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(here=here)],
        capture_output=True,  # stderr a pipe: no bar, lines
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in lines] == ["1/3", "2/3", "3/3"], done.stderr
    assert "ETA" in lines[0] and "valid NDCG@10" in lines[0] and "stopped: epochs" in lines[-1]
    assert done.stdout == ""
