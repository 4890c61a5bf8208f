"""kill -9 in the middle of training, then resume: the run ends exactly where an uninterrupted one does.

A subprocess (this file run as a script) trains a small SASRec with a checkpoint per epoch; once
at least one checkpoint exists it gets SIGKILL — no handler runs, whatever was being written
stays half-written. Resuming in this process must continue after the last complete epoch and
produce bit-identical scores and metrics: the loop checkpoints weights, best weights, optimizer
moments, step and early-stopping state, and derives every random draw from (seed, epoch).
Both sides use one intra-op thread so that float reductions run in the same order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from playnext.data.interactions import Interactions
from playnext.data.split import Split, leave_one_out
from playnext.evaluate.protocol import evaluate, model_scorer
from playnext.models.registry import create

EPOCHS = 10
PARAMS: dict[str, Any] = {
    "dim": 16,
    "max_len": 12,
    "epochs": EPOCHS,
    "lr": 5e-3,
    "batch_size": 32,
    "dropout": 0.2,  # dropout on: its RNG must be restored too
    "verbose": False,
    "patience": 0,
    "warmup_epochs": 1.0,
}


def data() -> Split:
    rng = np.random.default_rng(0)
    users: list[str] = []
    items: list[str] = []
    for u in range(300):
        start, length = int(rng.integers(80)), int(rng.integers(6, 14))
        users += [f"u{u}"] * length
        items += [str((start + k) % 80) for k in range(length)]
    return leave_one_out(Interactions.from_frame(pl.DataFrame({"user": users, "item": items})))


def fit(checkpoint_dir: str, resume: bool = False, ran: list[int] | None = None) -> Any:
    model = create("sasrec", **PARAMS, checkpoint_dir=checkpoint_dir, resume=resume)
    if ran is not None:
        model.on_epoch_end = lambda done, logs: ran.append(done)
    split = data()
    return model.fit(split.train, split.valid)


def one_thread() -> Any:
    class Pin:
        def __enter__(self) -> None:
            self.threads = torch.get_num_threads()
            torch.set_num_threads(1)

        def __exit__(self, *exc: object) -> None:
            torch.set_num_threads(self.threads)

    return Pin()


def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    index = ckpt / "checkpoint.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, __file__, str(ckpt)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not index.exists():
            if child.poll() is not None:
                assert child.stderr is not None
                pytest.fail(f"trainer exited early: {child.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
        assert child.stderr is not None
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    meta = json.loads(index.read_text())
    done = int(meta["epoch"])
    assert 1 <= done < EPOCHS and not meta["finished"]

    ran: list[int] = []
    with one_thread():
        resumed = fit(str(ckpt), resume=True, ran=ran)
        full = fit(str(tmp_path / "uninterrupted"))
    assert ran == list(range(done + 1, EPOCHS + 1))  # continued after the last complete epoch
    split = data()
    users, hist = split.test.users, split.test.history
    assert torch.equal(full.score(users, hist), resumed.score(users, hist))
    m_full = evaluate(model_scorer(full), split.test, split.train.n_items).metrics
    m_resumed = evaluate(model_scorer(resumed), split.test, split.train.n_items).metrics
    assert m_resumed == m_full
    assert [h["valid_NDCG@10"] for h in resumed.report_.history] == [
        h["valid_NDCG@10"] for h in full.report_.history
    ]


if __name__ == "__main__":  # the trainer that gets killed
    torch.set_num_threads(1)
    fit(sys.argv[1])
