"""Histories → padded integer tensors. Item ids are shifted by +1 so that 0 is padding.

Sequences are *left*-padded and cropped to their most recent `max_len` items, so the last
column is always the latest item and positional embeddings line up across batches. A batch is
padded only to its own longest row (≤ max_len), never to max_len, which saves attention work
on short-history batches without changing any result.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from playnext.data.interactions import Histories

PAD = 0


def left_pad(history: Histories, max_len: int, min_width: int = 1) -> np.ndarray:
    """(B, T) int64 of the most recent ≤ max_len items of each row, +1, left-padded with 0.

    T = max(min_width, longest cropped row); empty rows become all padding.
    """
    lengths = np.minimum(history.lengths, max_len)
    width = max(min_width, int(lengths.max(initial=0)))
    out = np.zeros((len(history), width), dtype=np.int64)
    if lengths.sum() == 0:
        return out
    rows = np.repeat(np.arange(len(history)), lengths)
    # k-th kept item of a row (0 = oldest kept) goes to column width - len + k
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    src = np.repeat(history.indptr[1:] - lengths, lengths) + within
    out[rows, width - np.repeat(lengths, lengths) + within] = history.items[src] + 1
    return out


def longest_first(history: Histories, max_len: int) -> np.ndarray:
    """Row order by cropped length, longest first: scoring chunks cut from it pad to their own
    rows' length instead of the longest of a random chunk (HSTU 8 × 128, 2,048 ML-1M users:
    30 s against 44 s on 2 busy cores, a one-off check; benchmarks.train_speed measures it)."""
    return np.argsort(-np.minimum(history.lengths, max_len), kind="stable")


def shard(order: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's share of a shuffled order (equal sizes, so collective ops stay in step)."""
    if world_size == 1:
        return order
    n = len(order) // world_size * world_size
    return order[:n][rank::world_size]


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    for s in range(0, n, batch_size):
        yield slice(s, min(n, s + batch_size))


def length_buckets(
    order: np.ndarray, lengths: np.ndarray, batch_size: int, pool: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Batches of the shuffled `order` whose rows have similar `lengths`, in random order.

    Each run of `pool` batches' worth of rows is sorted by length before it is cut, so a batch
    pads to little more than its own rows (ML-1M: widths drop from 200 to the rows' own ~110)
    while pools keep the batches' make-up random from epoch to epoch. The batch count equals
    that of plain slicing: only the last pool can be partial.
    """
    span = pool * batch_size
    out: list[np.ndarray] = []
    for s in range(0, len(order), span):
        chunk = order[s : s + span]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        out.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [out[i] for i in rng.permutation(len(out))]


def next_item_arrays(seqs: Histories, max_len: int) -> tuple[np.ndarray, Histories]:
    """Users with ≥ 2 items and their sequences cropped to the most recent max_len + 1 items.

    Input = row[:-1], target = row[1:]: every position predicts the next item (SASRec style).
    """
    keep = np.flatnonzero(seqs.lengths >= 2)
    rows = seqs.take(keep)
    lengths = np.minimum(rows.lengths, max_len + 1)
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    within = np.arange(int(indptr[-1])) - np.repeat(indptr[:-1], lengths)
    items = rows.items[np.repeat(rows.indptr[1:] - lengths, lengths) + within]
    return keep, Histories(indptr, items)


def split_next(cropped: Histories) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets), both (B, T) left-padded: inputs = row[:-1] + 1, targets = row[1:] + 1.

    A target is 0 (no loss) wherever the input is padding: nothing predicts a first item.
    """
    padded = left_pad(cropped, int(cropped.lengths.max(initial=2)), min_width=2)  # (B, T+1)
    inputs, targets = padded[:, :-1], padded[:, 1:].copy()
    targets[inputs == PAD] = PAD
    return inputs, targets


def windows(seqs: Histories, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (row, previous `window` items, next item) triple with at least one previous item.

    Returns rows (M,), inputs (M, window) left-padded with +1 ids, targets (M,) raw ids. Used by
    Caser, which sees a fixed window of recent items instead of the whole sequence.
    """
    lengths = seqs.lengths
    row_of = seqs.row_ids()
    pos = np.arange(len(seqs.items)) - np.repeat(seqs.indptr[:-1], lengths)  # position within row
    sel = np.flatnonzero(pos >= 1)
    inputs = np.zeros((len(sel), window), dtype=np.int64)
    for k in range(1, window + 1):  # column window-k holds the item k steps back
        ok = pos[sel] >= k
        inputs[ok, window - k] = seqs.items[sel[ok] - k] + 1
    return row_of[sel], inputs, seqs.items[sel].astype(np.int64)
