"""Padding, cropping and window helpers."""

from __future__ import annotations

import numpy as np

from playnext.data.interactions import Histories
from playnext.train.batches import (
    left_pad,
    length_buckets,
    next_item_arrays,
    shard,
    split_next,
    windows,
)


def test_left_pad_crops_to_most_recent_and_pads_left() -> None:
    h = Histories.from_lists([[0, 1, 2, 3], [5], []])
    out = left_pad(h, max_len=3)
    assert out.tolist() == [[2, 3, 4], [0, 0, 6], [0, 0, 0]]
    assert left_pad(Histories.from_lists([[], []]), 5).shape == (2, 1)


def test_next_item_pairs_every_position() -> None:
    seqs = Histories.from_lists([[0, 1, 2, 3, 4], [7], [8, 9]])
    users, cropped = next_item_arrays(seqs, max_len=3)
    assert users.tolist() == [0, 2]  # a single item has no next item
    inputs, targets = split_next(cropped)
    assert inputs.tolist() == [[2, 3, 4], [0, 0, 9]]
    assert targets.tolist() == [[3, 4, 5], [0, 0, 10]]


def test_windows_and_shards() -> None:
    rows, inputs, targets = windows(Histories.from_lists([[0, 1, 2], [4, 5]]), window=2)
    assert rows.tolist() == [0, 0, 1]
    assert inputs.tolist() == [[0, 1], [1, 2], [0, 5]]
    assert targets.tolist() == [1, 2, 5]
    order = np.arange(10)
    parts = [shard(order, r, 3) for r in range(3)]
    assert all(len(p) == 3 for p in parts) and len(set(np.concatenate(parts))) == 9


def test_length_buckets_cover_each_row_once_in_tighter_batches() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=1000)
    order = rng.permutation(1000)
    groups = length_buckets(order, lengths, batch_size=32, pool=8, rng=np.random.default_rng(1))
    assert len(groups) == -(-1000 // 32)  # as many steps as plain slicing
    assert sorted(np.concatenate(groups).tolist()) == list(range(1000))
    assert all(len(g) <= 32 for g in groups)
    plain = [order[s : s + 32] for s in range(0, 1000, 32)]
    width = sum(int(lengths[g].max()) for g in groups)
    assert width < 0.75 * sum(int(lengths[g].max()) for g in plain)
    # each pool is cut from its own rows: the first 8 batches' rows are the first 256 of order
    pool0 = {int(r) for g in groups for r in g if r in set(order[:256].tolist())}
    assert pool0 == set(order[:256].tolist())
    again = length_buckets(order, lengths, batch_size=32, pool=8, rng=np.random.default_rng(2))
    assert [g.tolist() for g in again] != [g.tolist() for g in groups]  # batch order reshuffled
