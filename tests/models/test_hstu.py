"""HSTU specifics beyond the shared contract: causality, padding invariance, the time bias,
pointwise (non-softmax) attention, and the L2-normalised sampled-softmax training recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from playnext.data.interactions import Histories, Interactions
from playnext.data.split import leave_one_out
from playnext.errors import ConfigError
from playnext.models.base import Recommender
from playnext.models.hstu import HSTU, HSTUConfig, HSTUNet, time_buckets

TINY = {"dim": 16, "n_blocks": 2, "n_heads": 2, "max_len": 12, "dropout": 0.0}


def net(**over: object) -> HSTUNet:
    torch.manual_seed(0)
    cfg = HSTUConfig.from_dict({**TINY, **over})
    return HSTUNet(30, cfg).eval()


@pytest.mark.parametrize("abs_pos", [False, True])
def test_causal_and_padding_invariant(abs_pos: bool) -> None:
    n = net(abs_pos=abs_pos)  # absolute positions count from the first real item, not the pad
    seq = torch.tensor([[0, 0, 3, 4, 5, 6]])
    with torch.no_grad():
        full = n.encode(seq)  # (1, 6, D)
        cut = n.encode(seq[:, :4])  # a prefix: earlier states must not see later items
        unpadded = n.encode(seq[:, 2:])  # no padding: same states for the real items
    assert torch.allclose(full[:, :4], cut, atol=1e-6)
    assert torch.allclose(full[:, 2:], unpadded, atol=1e-6)
    assert torch.allclose(full.norm(dim=-1)[:, 2:], torch.ones(1, 4), atol=1e-5)  # L2-normalised


def test_time_bias_changes_states_and_buckets_are_logarithmic() -> None:
    dt = torch.tensor([0, 1, 2, 3, 4, 1000, -1000, 10**9])
    assert time_buckets(dt, 20).tolist() == [0, 0, 1, 1, 2, 9, 9, 20]
    n = net()
    with torch.no_grad():
        n.layers[0].rab.time_w.copy_(torch.linspace(-2, 2, len(n.layers[0].rab.time_w)))
        seq = torch.tensor([[1, 2, 3]])
        a = n.encode(seq, torch.tensor([[0, 10, 20]]))
        b = n.encode(seq, torch.tensor([[0, 10, 10**6]]))
        c = n.encode(seq, torch.tensor([[5, 15, 25]]))  # only differences matter
    assert not torch.allclose(a[:, -1], b[:, -1])
    assert torch.allclose(a, c, atol=1e-6)


def test_attention_is_pointwise_silu_not_softmax() -> None:
    block = net(n_blocks=1).layers[0]
    q = torch.ones(1, 1, 1, 4)
    k = torch.ones(1, 1, 3, 4)
    v = torch.eye(3)[None, None]  # (1, 1, 3, 3)
    bias, mask = torch.zeros(1, 1, 3), torch.ones(1, 1, 3)
    out = block.attend(q, k, v, bias, mask)
    expected = torch.nn.functional.silu(torch.tensor(4.0)) / block.norm  # weights do not sum to 1
    assert torch.allclose(out, torch.full((1, 1, 1, 3), float(expected)))


def test_config_validation() -> None:
    for bad in ({"temperature": 0.0}, {"dim": 10, "n_heads": 3}, {"n_blocks": 0}, {"loss": "nope"}):
        with pytest.raises(ConfigError):
            HSTUConfig.from_dict(bad)
    assert HSTUConfig.from_dict({"dim": 10, "n_heads": 3, "qk_dim": 4, "v_dim": 4}).head_dims == (4, 4)


def timed_cycles(n_users: int = 60, n_items: int = 30) -> Interactions:
    """Cycles over items with timestamps: item k is followed by k + 1."""
    rng = np.random.default_rng(0)
    users, items, times = [], [], []
    for u in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(6, 12))
        users += [f"u{u}"] * length
        items += [str((start + k) % n_items) for k in range(length)]
        times += list(np.cumsum(rng.integers(1, 10_000, size=length)))
    return Interactions.from_frame(pl.DataFrame({"user": users, "item": items, "timestamp": times}))


def test_trains_with_times_and_keeps_them_through_save_load(tmp_path: Path) -> None:
    split = leave_one_out(timed_cycles())
    cfg = HSTUConfig.from_dict({**TINY, "epochs": 3, "lr": 5e-3, "verbose": False, "patience": 0})
    model = HSTU(cfg).fit(split.train, split.valid)
    assert model.user_times_ is not None and len(model.user_times_) == len(split.train)
    users, hist = split.test.users, split.test.history
    times = model.times_for(users, hist, 12)
    assert times is not None and (times[:, -1] > 0).all()  # known users: training times found
    anonymous = model.score(np.full(len(users), -1), hist)  # Δt unknown → 0
    assert not torch.allclose(anonymous, model.score(users, hist))
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert torch.equal(model.score(users, hist), loaded.score(users, hist))
    no_time = HSTU(HSTUConfig.from_dict({**cfg.to_dict(), "time_bias": False}))
    no_time.fit(split.train, split.valid)
    assert no_time.user_times_ is None


def test_sampled_and_full_softmax_both_train() -> None:
    split = leave_one_out(timed_cycles())
    for loss in ("sampled_softmax", "ce"):
        cfg = HSTUConfig.from_dict(
            {**TINY, "epochs": 2, "loss": loss, "n_negatives": 16, "verbose": False, "patience": 0}
        )
        model = HSTU(cfg).fit(split.train, split.valid)
        assert model.report_ is not None and np.isfinite(model.report_.history[-1]["loss"])
    assert model.score(np.array([-1]), Histories.from_lists([[1, 2]])).shape == (1, split.train.n_items)


def test_last_only_encoding_equals_full() -> None:
    n = net()
    seq = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    times = torch.tensor([[0, 0, 1, 50, 900, 901], [0, 3, 9, 10, 70, 8000]])
    with torch.no_grad():
        for t in (None, times):
            assert torch.allclose(n.encode(seq, t)[:, -1:], n.encode(seq, t, last_only=True), atol=1e-6)
