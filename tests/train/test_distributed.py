"""Data-parallel training: 2 gloo processes on CPU train the same model as 1 process.

One spawned 2-process job (≈ 10 s, most of it importing torch twice) trains SASRec to the end,
evaluates it with the distributed evaluator, and trains a second copy that stops after epoch 1
with a checkpoint; the parent compares against one process and resumes that checkpoint alone.

Why "same" is a tolerance and not bit equality: with the same global batches, each rank's loss
is re-weighted by its share of the batch's loss terms, so the all-reduced gradient is the
single-process gradient as a *sum in a different order* (two partial sums of half the
positions each, then one add), which differs in the last float32 bits; Adam carries such
differences forward. Measured here after 3 epochs: scores within 1e-6, metrics identical.
The test allows scores within 1e-4 and metrics within 1/200 (one test user's target moving
one place past a near-tie); the evaluator alone — same weights, float64 sums — within 1e-12.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from playnext.data.interactions import Interactions
from playnext.data.split import EvalSet, Split, leave_one_out
from playnext.evaluate.protocol import evaluate, model_scorer
from playnext.experiment import fit_and_save
from playnext.models.base import Recommender
from playnext.models.neural import NeuralRecommender
from playnext.models.registry import create, get, names
from playnext.train import batches as B
from playnext.train import distributed as D

# dropout 0 and full-softmax CE: the only randomness is the (seed, epoch) shuffle, shared by all ranks
PARAMS: dict[str, Any] = {
    "dim": 16,
    "max_len": 12,
    "epochs": 3,
    "lr": 1e-2,
    "batch_size": 64,  # the GLOBAL batch: 32 rows per rank with 2 processes
    "dropout": 0.0,
    "verbose": False,
    "patience": 0,
    "warmup_epochs": 0.0,
}
METRIC_TOL = 1 / 200  # HR/NDCG/MRR after training: float summation order (module docstring)
SCORE_TOL = 1e-4
EVAL_TOL = 1e-12  # the distributed evaluator on identical weights: float64 sums, different order


OTHERS = [n for n in names() if n != "sasrec" and issubclass(get(n), NeuralRecommender)]
BUCKETED = "sasrec, length_buckets=2"


def tiny(name: str) -> dict[str, Any]:
    fields = get(name).config_class.__dataclass_fields__
    small = {"dim": 8, "hidden": 8, "max_len": 6, "layers": "16", "n_blocks": 1}
    fixed = {"epochs": 1, "batch_size": 64, "verbose": False}
    return {**{k: v for k, v in small.items() if k in fields}, **fixed}


def cycles(n_users: int = 200, n_items: int = 60, seed: int = 0) -> Interactions:
    """Each user walks a cycle (item k → k + 1). 200 training sequences: both ranks get 100.

    (With an odd count the shard drops each epoch's last shuffled sequence so that ranks stay
    in step, and the runs would differ by that one sequence per epoch.)
    """
    rng = np.random.default_rng(seed)
    users: list[str] = []
    items: list[str] = []
    for u in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(6, 14))
        users += [f"u{u}"] * length
        items += [str((start + k) % n_items) for k in range(length)]
    return Interactions.from_frame(pl.DataFrame({"user": users, "item": items}))


def odd_test(split: Split) -> EvalSet:
    """199 test users, so the evaluation shards are unequal (100 and 99)."""
    return split.test.take(np.arange(len(split.test) - 1))


class Interrupted(Exception):
    pass


def _stop_after_first_epoch(done: int, logs: dict[str, float]) -> None:
    if done == 1:
        raise Interrupted


def _worker(split: Split, out: str) -> None:
    """Runs in each of the 2 spawned ranks."""
    rank, world = D.group()
    assert world == 2
    fit_and_save("sasrec", PARAMS, split.train, split.valid, f"{out}/full")
    model = Recommender.load(f"{out}/full")  # the same weights on every rank
    res = evaluate(
        model_scorer(model),
        odd_test(split),
        split.train.n_items,
        item_counts=split.train.item_counts(),
        distributed=True,
    )
    if rank == 0:
        Path(f"{out}/eval.json").write_text(json.dumps({"metrics": res.metrics, "n": res.n_users}))
    crashed = create("sasrec", **PARAMS, checkpoint_dir=f"{out}/ckpt")
    crashed.on_epoch_end = _stop_after_first_epoch
    with contextlib.suppress(Interrupted):
        crashed.fit(split.train, split.valid)
    losses = {}
    for name in OTHERS:  # every other neural model: one epoch under DDP
        model = create(name, **tiny(name)).fit(split.train, split.valid)
        assert isinstance(model, NeuralRecommender) and model.report_ is not None
        losses[name] = model.report_.history[-1]["loss"]
    # length buckets: each rank sorts its own shard's pools; the batch counts still match
    model = create("sasrec", **tiny("sasrec"), length_buckets=2).fit(split.train, split.valid)
    assert isinstance(model, NeuralRecommender) and model.report_ is not None
    losses[BUCKETED] = model.report_.history[-1]["loss"]
    if rank == 0:
        Path(f"{out}/others.json").write_text(json.dumps(losses))


@pytest.fixture(scope="module")
def split() -> Split:
    return leave_one_out(cycles())


@pytest.fixture(scope="module")
def one_process(split: Split) -> NeuralRecommender:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = create("sasrec", **PARAMS).fit(split.train, split.valid)
        assert isinstance(model, NeuralRecommender)
        return model
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def two_processes(split: Split, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    D.run_local(_worker, 2, split, str(out), threads=1)
    return out


def test_two_processes_train_the_same_model(
    split: Split, one_process: NeuralRecommender, two_processes: Path
) -> None:
    two = Recommender.load(two_processes / "full")
    users, hist = split.test.users, split.test.history
    s1, s2 = one_process.score(users, hist), two.score(users, hist)
    assert torch.allclose(s1, s2, atol=SCORE_TOL, rtol=0), float((s1 - s2).abs().max())
    m1 = evaluate(model_scorer(one_process), split.test, split.train.n_items).metrics
    m2 = evaluate(model_scorer(two), split.test, split.train.n_items).metrics
    assert m1["HR@10"] > 0.5  # it learned something, so the comparison means something
    for key in ("HR@10", "NDCG@10", "MRR"):
        assert m2[key] == pytest.approx(m1[key], abs=METRIC_TOL), key
    report = json.loads((two_processes / "full" / "report.json").read_text())
    assert report["world_size"] == 2 and report["epochs"] == PARAMS["epochs"]
    assert one_process.report_ is not None
    valid1 = [h["valid_NDCG@10"] for h in one_process.report_.history]
    valid2 = [h["valid_NDCG@10"] for h in report["history"]]
    assert valid2 == pytest.approx(valid1, abs=METRIC_TOL)


def test_distributed_evaluation_reduces_sums_exactly(split: Split, two_processes: Path) -> None:
    model = Recommender.load(two_processes / "full")
    test = odd_test(split)
    single = evaluate(model_scorer(model), test, split.train.n_items, item_counts=split.train.item_counts())
    reduced = json.loads((two_processes / "eval.json").read_text())
    assert reduced["n"] == single.n_users == len(test) == 199
    assert set(reduced["metrics"]) == set(single.metrics)
    for key, value in single.metrics.items():
        assert reduced["metrics"][key] == pytest.approx(value, rel=EVAL_TOL, abs=EVAL_TOL), key


def test_resume_on_a_different_number_of_processes(
    split: Split, one_process: NeuralRecommender, two_processes: Path
) -> None:
    """Epoch 1 ran on 2 processes; epochs 2-3 resume from its checkpoint on 1."""
    meta = json.loads((two_processes / "ckpt" / "checkpoint.json").read_text())
    assert meta["epoch"] == 1 and not meta["finished"]
    resumed = create("sasrec", **PARAMS, checkpoint_dir=str(two_processes / "ckpt"), resume=True)
    ran: list[int] = []
    resumed.on_epoch_end = lambda done, logs: ran.append(done)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        resumed.fit(split.train, split.valid)
    finally:
        torch.set_num_threads(threads)
    assert ran == [2, 3]
    users, hist = split.test.users, split.test.history
    s1, s2 = one_process.score(users, hist), resumed.score(users, hist)
    assert torch.allclose(s1, s2, atol=SCORE_TOL, rtol=0), float((s1 - s2).abs().max())


def test_every_neural_model_trains_data_parallel(two_processes: Path) -> None:
    """DDP with static_graph copes with models whose loss leaves some parameters unused."""
    losses = json.loads((two_processes / "others.json").read_text())
    assert set(losses) == {*OTHERS, BUCKETED} and OTHERS
    assert all(np.isfinite(v) for v in losses.values())


def test_rank_shards_partition_each_global_batch() -> None:
    """Strided shards with local batch = global / world: rank batches k together are batch k."""
    order = np.random.default_rng(0).permutation(200)
    glob = [order[s] for s in B.batch_slices(200, 64)]
    shards = [B.shard(order, r, 2) for r in range(2)]
    local = [[sh[s] for s in B.batch_slices(len(sh), 32)] for sh in shards]
    assert len(local[0]) == len(local[1]) == len(glob)
    for k, g in enumerate(glob):
        assert sorted(np.concatenate([local[0][k], local[1][k]])) == sorted(g)


def test_loss_terms_count_positions_with_a_target(split: Split) -> None:
    model = create("sasrec", **PARAMS)
    batch = {"inputs": torch.tensor([[0, 1, 2], [3, 4, 5]]), "targets": torch.tensor([[0, 2, 3], [4, 5, 6]])}
    assert model.loss_terms(batch) == 5
    mlp = create("mlp")
    assert mlp.loss_terms({"users": torch.zeros(7), "targets": torch.zeros(7)}) == 7


def test_outside_torchrun_is_not_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert not D.in_worker() and D.group() == (0, 1)  # nothing initialised in the test process
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert D.in_worker()


@pytest.mark.slow
def test_torchrun_worker_end_to_end(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`launch` (what `playnext train --nproc 2` runs): torch.distributed.run → 2 ranks of the
    one `train` command; rank 0 alone prints one JSON record and saves a loadable model."""
    params = ["epochs=1", "dim=8", "max_len=8", "n_blocks=1", "batch_size=32", "patience=0"]
    argv = ["-m", "playnext.cli", "train", "--model", "sasrec", "--dataset", "synthetic"]
    argv += ["--option", "n_users=120", "--option", "n_items=80", "--out", str(tmp_path / "model"), "--json"]
    argv += [arg for p in params for arg in ("--param", p)]
    assert D.launch(2, argv) == 0
    lines = [ln for ln in capfd.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["world_size"] == 2 and record["backend"] == "gloo"
    assert 0.0 <= record["metrics"]["NDCG@10"] <= 1.0
    assert Path(record["model_dir"]).is_dir()
