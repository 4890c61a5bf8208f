"""The models' own KV cache is exact: for SASRec and HSTU fitted briefly on the synthetic world,
appending events one at a time through `prefill` / `step` gives the last hidden state (and the
scores) of a full pass over the whole history — past `max_len`, where the window slides and the
cache is prefilled again, and for a batch of histories of different lengths."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from playnext.data.interactions import Histories
from playnext.data.synthetic import generate_world
from playnext.models.cache import KVCache
from playnext.models.hstu import HSTU, HSTUConfig
from playnext.models.parts.net import SequenceNet
from playnext.models.sasrec import SASRec, SASRecConfig

MAX_LEN = 8
SMALL = {"dim": 16, "n_heads": 2, "n_blocks": 2, "max_len": MAX_LEN, "epochs": 1, "device": "cpu"}
ATOL = 1e-5


@pytest.fixture(scope="module")
def world() -> Any:
    return generate_world(n_users=60, n_items=300, seed=0)


_FITTED: dict[str, SASRec | HSTU] = {}


def fitted(world: Any, case: str) -> SASRec | HSTU:
    """One brief fit per case for the whole module (the world is the same)."""
    if case not in _FITTED:
        if case == "sasrec":
            model: SASRec | HSTU = SASRec(SASRecConfig.from_dict(SMALL))
        elif case == "sasrec-authors":  # the authors' block: k, v from the raw input, LN'd residuals
            authors = {"block": "sasrec", "activation": "relu", "init": "xavier", "scale_items": False}
            model = SASRec(SASRecConfig.from_dict({**SMALL, **authors}))
        else:
            model = HSTU(HSTUConfig.from_dict({**SMALL, "abs_pos": case == "hstu-abs", "loss": "ce"}))
        _FITTED[case] = model.fit(world)
    _FITTED[case].net_.eval()
    return _FITTED[case]


def histories(model: SASRec | HSTU, world: Any, n: int) -> tuple[list[list[int]], list[list[int]] | None]:
    """The n longest training histories (items, and seconds when the model has a time bias)."""
    seqs = world.sequences()
    rows = np.argsort(-seqs.lengths, kind="stable")[:n]
    items = [seqs[int(r)].tolist() for r in rows]
    if not isinstance(model, HSTU) or model.user_times_ is None:
        return items, None
    t = Histories(seqs.indptr, model.user_times_)
    return items, [t[int(r)].tolist() for r in rows]


def pad(rows: list[list[int]], shift: int) -> torch.Tensor:
    """(B, T) left-padded with 0, every value + shift (+1 for ids, as the nets take them)."""
    out = torch.zeros(len(rows), max(1, max(map(len, rows))), dtype=torch.int64)
    for r, row in enumerate(rows):
        if row:
            out[r, -len(row) :] = torch.tensor(row) + shift
    return out


def window(rows: list[list[int]] | None, n: int, shift: int) -> torch.Tensor | None:
    """The last `n` values of each row, left-padded (what a full pass reads)."""
    return None if rows is None else pad([row[-n:] for row in rows], shift)


def full_last(net: SequenceNet, items: list[list[int]], times: list[list[int]] | None) -> torch.Tensor:
    seq = window(items, MAX_LEN, 1)
    assert seq is not None
    return net.encode_last(seq, window(times, MAX_LEN, 0))  # (B, D)


def prefill(net: SequenceNet, items: list[list[int]], times: list[list[int]] | None) -> KVCache:
    seq = window(items, MAX_LEN, 1)
    assert seq is not None
    return net.prefill(seq, window(times, MAX_LEN, 0))


def stream(
    model: SASRec | HSTU, items: list[list[int]], times: list[list[int]] | None, starts: list[int]
) -> int:
    """Append every row's events from its start on, one step for the whole batch at a time,
    checking each step against the full pass; returns how often the cache was prefilled again."""
    net = model.net_

    def upto(rows: list[list[int]] | None, j: int) -> Any:
        return None if rows is None else [row[: s + j] for row, s in zip(rows, starts, strict=True)]

    def column(rows: list[list[int]], j: int, shift: int) -> torch.Tensor:
        return torch.tensor([[row[s + j] + shift] for row, s in zip(rows, starts, strict=True)])  # (B, 1)

    rebuilt = 0
    with torch.no_grad():
        cache = prefill(net, upto(items, 0), upto(times, 0))
        for j in range(min(len(row) - s for row, s in zip(items, starts, strict=True))):
            new_t = column(times, j, 0) if times is not None else None
            h, cache = net.step(column(items, j, 1), cache, new_t)  # (B, D)
            ref = full_last(net, upto(items, j + 1), upto(times, j + 1))  # (B, D)
            assert torch.allclose(h, ref, atol=ATOL), (j, (h - ref).abs().max())
            vecs = net.item_vectors()  # (I, D)
            assert torch.allclose(h @ vecs.T, ref @ vecs.T, atol=ATOL * 10)
            if not cache.extendable:
                cache = prefill(net, upto(items, j + 1), upto(times, j + 1))
                rebuilt += 1
    return rebuilt


CASES = ["sasrec", "sasrec-authors", "hstu", "hstu-abs"]


@pytest.mark.parametrize("case", CASES)
def test_one_history_past_max_len(world: Any, case: str) -> None:
    model = fitted(world, case)
    items, times = histories(model, world, 1)
    assert len(items[0]) > 3 * MAX_LEN  # the window slides many times
    assert (times is not None) == case.startswith("hstu")  # the world has timestamps: a time bias
    rebuilt = stream(model, items, times, starts=[0])
    steps = len(items[0])
    # SASRec's positions move on every append; HSTU's cache grows in place until the window fills
    assert rebuilt == (steps if case.startswith("sasrec") else steps - MAX_LEN + 1)


@pytest.mark.parametrize("case", CASES)
def test_batch_of_different_lengths(world: Any, case: str) -> None:
    """Four sessions stepped together, 0, 2, 5 and 9 events in when the batch starts: the cache
    is left-padded, and each row's state is its own full pass."""
    model = fitted(world, case)
    items, times = histories(model, world, 4)
    rebuilt = stream(model, items, times, starts=[0, 2, 5, 9])
    assert rebuilt >= 1  # rows slide past max_len along the way


def test_step_refuses_what_it_cannot_do_exactly(world: Any) -> None:
    sasrec = fitted(world, "sasrec")
    with torch.no_grad():
        cache = sasrec.net_.prefill(torch.tensor([[3, 4]]))
        _, after = sasrec.net_.step(torch.tensor([[5]]), cache)
        assert not after.extendable and after.length == 3
        with pytest.raises(ValueError, match="prefill"):
            sasrec.net_.step(torch.tensor([[6]]), after)  # every earlier position moved
        with pytest.raises(ValueError, match=r"\(B, 1\)"):
            sasrec.net_.step(torch.tensor([[5, 6]]), cache)
    hstu = fitted(world, "hstu")
    with torch.no_grad():
        cache = hstu.net_.prefill(torch.tensor([[3, 4]]), torch.tensor([[10, 20]]))
        with pytest.raises(ValueError, match="times"):
            hstu.net_.step(torch.tensor([[5]]), cache)
        long = hstu.net_.prefill(torch.arange(1, 3 * MAX_LEN)[None], torch.arange(3 * MAX_LEN - 1)[None])
        assert long.length == MAX_LEN - 1  # the cache keeps the window a next event extends
        _, full = hstu.net_.step(torch.tensor([[5]]), long, torch.tensor([[100]]))
        assert not full.extendable  # the next window drops the oldest item


# ---- with actions: the action embedding rides along each position, and the cache stays exact ----
@pytest.fixture(scope="module")
def typed_world() -> Any:
    return generate_world(n_users=60, n_items=300, seed=0, typed_events=True)


@pytest.mark.parametrize("case", ["sasrec", "hstu", "hstu-abs"])
def test_cache_is_exact_with_actions(typed_world: Any, case: str) -> None:
    typed = {**SMALL, "actions": True, "targets": "positive"}
    if case == "sasrec":
        model: SASRec | HSTU = SASRec(SASRecConfig.from_dict(typed))
    else:
        model = HSTU(HSTUConfig.from_dict({**typed, "abs_pos": case == "hstu-abs", "loss": "ce"}))
    model.fit(typed_world)
    net = model.net_.eval()
    assert net.action_emb is not None
    seqs = typed_world.sequences()
    rows = np.argsort(-seqs.lengths, kind="stable")[:3]
    acts = Histories(seqs.indptr, model.action_ids(seqs))
    items = [seqs[int(r)].tolist() for r in rows]
    actions = [acts[int(r)].tolist() for r in rows]
    assert len({a for row in actions for a in row}) > 2  # several event types and buckets
    times = None
    if isinstance(model, HSTU) and model.user_times_ is not None:
        t = Histories(seqs.indptr, model.user_times_)
        times = [t[int(r)].tolist() for r in rows]
    starts = [0, 3, 6]

    def upto(rs: list[list[int]] | None, j: int) -> Any:
        return None if rs is None else [row[: s + j] for row, s in zip(rs, starts, strict=True)]

    def col(rs: list[list[int]], j: int, shift: int) -> torch.Tensor:
        return torch.tensor([[row[s + j] + shift] for row, s in zip(rs, starts, strict=True)])  # (B, 1)

    def full(j: int) -> torch.Tensor:
        seq, a = window(upto(items, j), MAX_LEN, 1), window(upto(actions, j), MAX_LEN, 0)
        assert seq is not None
        return net.encode_last(seq, window(upto(times, j), MAX_LEN, 0), actions=a)  # (B, D)

    def fill(j: int) -> KVCache:
        seq, a = window(upto(items, j), MAX_LEN, 1), window(upto(actions, j), MAX_LEN, 0)
        assert seq is not None
        return net.prefill(seq, window(upto(times, j), MAX_LEN, 0), actions=a)

    with torch.no_grad():
        cache = fill(0)
        for j in range(min(len(r) - s for r, s in zip(items, starts, strict=True))):
            t = col(times, j, 0) if times is not None else None
            h, cache = net.step(col(items, j, 1), cache, t, actions=col(actions, j, 0))  # (B, D)
            ref = full(j + 1)
            assert torch.allclose(h, ref, atol=ATOL), (j, (h - ref).abs().max())
            if not cache.extendable:
                cache = fill(j + 1)
        # the actions matter: the same items read as untyped give another state
        seq = window(items, MAX_LEN, 1)
        assert seq is not None
        assert not torch.allclose(net.encode_last(seq, window(times, MAX_LEN, 0)), full(10**6), atol=1e-4)
