"""Sparse item tables (the large-catalog path): sparse gradients, SparseAdam, same learning,
exact resume, and a clear refusal where the option cannot work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from test_contract import FAST, Interrupted, crash_after, cycles

from playnext.data.split import Split, leave_one_out
from playnext.errors import ConfigError
from playnext.evaluate.protocol import evaluate, model_scorer
from playnext.models.registry import create
from playnext.train.optim import Optimizers

# the contract test's quick recipes, two epochs longer: sampled softmax learns a little slower
SPARSE: dict[str, dict[str, Any]] = {name: {**FAST[name], "epochs": 6} for name in ("sasrec", "gru4rec")}
COMMON = {
    "verbose": False,
    "patience": 0,
    "warmup_epochs": 0.0,
    "loss": "sampled_softmax",
    "n_negatives": 32,
    "sparse_embeddings": True,
}


@pytest.fixture(scope="module")
def split() -> Split:
    return leave_one_out(cycles())


def params(name: str, **over: Any) -> dict[str, Any]:
    return {**SPARSE[name], **COMMON, **over}


@pytest.mark.parametrize("name", sorted(SPARSE))
def test_sparse_table_learns_with_sparse_gradients(name: str, split: Split) -> None:
    model = create(name, **params(name))
    seen: list[bool] = []

    def spy(done: int, logs: dict[str, float]) -> None:  # after an epoch the last step's grad is kept
        seen.append(
            bool(model.net_.item_emb.weight.grad is not None and model.net_.item_emb.weight.grad.is_sparse)
        )

    model.on_epoch_end = spy
    model.fit(split.train, split.valid)
    assert seen and all(seen), "the item table must get sparse gradients"
    hr = evaluate(model_scorer(model), split.test, split.train.n_items).metrics["HR@10"]
    pop = create("popular").fit(split.train)
    pop_hr = evaluate(model_scorer(pop), split.test, split.train.n_items).metrics["HR@10"]
    assert hr >= pop_hr + 0.4, f"{name}: HR@10 {hr:.3f} vs popularity {pop_hr:.3f}"


def test_sparse_resume_is_exact(split: Split, tmp_path: Path) -> None:
    """SparseAdam's moments and its integer step survive the checkpoint file."""
    users, hist = split.test.users, split.test.history
    full = create("sasrec", **params("sasrec", epochs=2, checkpoint_dir=str(tmp_path / "a")))
    full.fit(split.train, split.valid)
    cfg = params("sasrec", epochs=2, checkpoint_dir=str(tmp_path / "b"))
    crashed = create("sasrec", **cfg)
    crashed.on_epoch_end = crash_after(1)
    with pytest.raises(Interrupted):
        crashed.fit(split.train, split.valid)
    resumed = create("sasrec", **{**cfg, "resume": True})
    resumed.fit(split.train, split.valid)
    assert torch.equal(full.score(users, hist), resumed.score(users, hist))


def test_optimizer_split_and_state_roundtrip() -> None:
    net = torch.nn.Sequential(torch.nn.Embedding(50, 4, sparse=True), torch.nn.Linear(4, 1))
    from playnext.train.config import TrainConfig
    from playnext.train.optim import make_optimizer

    opt, clipped = make_optimizer(net, TrainConfig(lr=0.1))
    assert isinstance(opt, Optimizers)
    assert [p.shape for p in clipped] == [torch.Size([1, 4]), torch.Size([1])]  # only dense params clipped
    net(torch.tensor([[1, 2]])).sum().backward()
    opt.step()
    sd = opt.state_dict()
    assert sorted(sd["state"]) == [0, 1, 2]  # dense weight, dense bias, then the table
    assert int(sd["state"][2]["step"]) == 1
    fresh, _ = make_optimizer(net, TrainConfig(lr=0.1))
    assert isinstance(fresh, Optimizers)
    fresh.load_state_dict(sd)
    assert fresh.parts[1].state_dict()["state"][0]["step"] == 1
    assert torch.equal(fresh.parts[1].state_dict()["state"][0]["exp_avg"], sd["state"][2]["exp_avg"])


@pytest.mark.parametrize(
    "name,over,match",
    [
        ("sasrec", {"loss": "ce"}, "sampled_softmax"),
        ("hstu", {"loss": "sampled_softmax"}, "sparse_embeddings"),
    ],
)
def test_sparse_refused_where_it_cannot_work(name: str, over: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create(name, sparse_embeddings=True, **over)
