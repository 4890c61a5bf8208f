"""Splits that match published protocols: leave-one-out over a stable time order, global temporal.

The order comes from `Interactions` (timestamp, ties by file position), so two runs — or two
toolkits reading the same file — agree on every test target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from playnext.data.interactions import Columns, Histories, Interactions
from playnext.errors import DataError


@dataclass(frozen=True)
class EvalSet:
    """What a model is asked and what the right answers are, for a batch of users.

    `history` is the model's input (in time order), `targets` the held-out items, and
    `exclude` the items masked from the ranking (the user's already-seen items).
    """

    users: np.ndarray
    history: Histories
    targets: Histories
    exclude: Histories

    def __len__(self) -> int:
        return len(self.users)

    def take(self, rows: np.ndarray) -> EvalSet:
        return EvalSet(
            self.users[rows], self.history.take(rows), self.targets.take(rows), self.exclude.take(rows)
        )

    def without_exclusion(self) -> EvalSet:
        empty = Histories(np.zeros(len(self) + 1, dtype=np.int64), np.zeros(0, dtype=np.int64))
        return EvalSet(self.users, self.history, self.targets, empty)


@dataclass(frozen=True)
class Split:
    """Training interactions plus validation and test questions."""

    train: Interactions
    valid: EvalSet
    test: EvalSet
    protocol: dict[str, object]
    # the validation window's rows (canonical order): a final refit trains on train + these
    valid_events: pl.DataFrame | None = None

    def train_and_valid(self) -> Interactions:
        """Everything before the test targets: what a chosen model may be refit on before test.

        Why: a model chosen on validation was trained without the validation events, the most
        recent of each user's; papers that train on all but the test event (HSTU's code) see them.
        Within each user the validation rows come after the training rows in both splits, so a
        stable sort by user restores the canonical order.
        """
        if self.valid_events is None:
            raise ValueError("this split keeps no validation events to refit on")
        frame = pl.concat([self.train.frame, self.valid_events]).sort(Columns.USER, maintain_order=True)
        return self.train.replace(frame)

    def unmasked(self) -> Split:
        """The same questions with nothing excluded: the repeat-aware protocol's split.

        Why a split and not only an evaluation flag: a neural model validates on `valid`
        while it trains (early stopping, the kept epoch), and should be judged there as it
        will be on test, with the items it has seen still candidates.
        """
        protocol = {**self.protocol, "seen_items": "candidates (repeat-aware protocol)"}
        valid, test = self.valid.without_exclusion(), self.test.without_exclusion()
        return Split(self.train, valid, test, protocol, self.valid_events)


def leave_one_out(data: Interactions, min_length: int = 3) -> Split:
    """Last item of each user = test, second-last = validation, the rest = train.

    Users with fewer than `min_length` interactions keep everything in train and are not
    evaluated (the SASRec/BERT4Rec convention). The test question's history includes the
    validation item; the model is *not* refit on it unless asked (`Split.train_and_valid`).
    Repeated items stay as they are: a target may be an item already in its history (a
    re-listen), which the repeat-aware protocol (`Split.unmasked`) keeps as a candidate.
    """
    if min_length < 2:  # a 1-event user would get a test item but no validation item
        raise ValueError(f"min_length must be at least 2 (a validation and a test item), got {min_length}")
    seqs = data.sequences()
    lengths = seqs.lengths
    n = len(data)
    # rank from the end within each user: 0 = last
    from_end = np.repeat(seqs.indptr[1:], lengths) - 1 - np.arange(n)
    eligible = np.repeat(lengths >= min_length, lengths)
    is_test = eligible & (from_end == 0)
    is_valid = eligible & (from_end == 1)
    train = data.replace(data.frame.filter(pl.Series(~(is_test | is_valid))))
    users = np.flatnonzero(lengths >= min_length).astype(np.int64)
    train_seqs = train.sequences().take(users)
    one = np.arange(len(users) + 1, dtype=np.int64)
    valid_t = seqs.select(is_valid, one)  # with its event: the test history ends with it
    test_t = Histories(one, seqs.items[is_test])
    test_hist = train_seqs.concat_rows(valid_t)
    valid = EvalSet(users, train_seqs, valid_t, train_seqs)
    test = EvalSet(users, test_hist, test_t, test_hist)
    protocol = {
        "split": "leave-one-out",
        "order": "stable time (timestamp, ties by file order)",
        "min_user_interactions": min_length,
        "test_history": "train + validation item (no refit)",
    }
    return Split(train, valid, test, protocol, data.frame.filter(pl.Series(is_valid)))


def temporal_split(data: Interactions, test_fraction: float = 0.1, valid_fraction: float = 0.1) -> Split:
    """Global time cut: the last `test_fraction` of events (by time) is test, the slice before is
    validation. Targets are a user's *new* items after the cut; only users with history before
    the cut are evaluated."""
    if not 0 < test_fraction < 1 or not 0 < valid_fraction < 1 or test_fraction + valid_fraction >= 1:
        raise ValueError("fractions must be in (0, 1) and sum to less than 1")
    c = Columns
    frame = data.frame
    missing = frame.get_column(c.TIMESTAMP).null_count()
    if missing == len(frame):
        order_key = pl.col(c.POSITION)
    elif missing:
        # NaN keys would make every cut NaN: all events silently land in train, nobody is evaluated
        raise DataError(
            f"a global temporal split needs a timestamp on every interaction or on none; "
            f"{missing} of {len(frame)} have none",
            field=c.TIMESTAMP,
        )
    else:
        order_key = pl.col(c.TIMESTAMP)
    keys = frame.select(order_key).to_series().to_numpy()
    t_test = np.quantile(keys, 1 - test_fraction, method="lower")
    t_valid = np.quantile(keys, 1 - test_fraction - valid_fraction, method="lower")
    k = pl.Series(keys)
    train = data.replace(frame.filter(k <= t_valid))
    before_test = data.replace(frame.filter(k <= t_test))
    valid = _future_eval(train, frame.filter((k > t_valid) & (k <= t_test)), data.n_users)
    test = _future_eval(before_test, frame.filter(k > t_test), data.n_users)
    protocol = {
        "split": "global temporal",
        "test_fraction": test_fraction,
        "valid_fraction": valid_fraction,
        "targets": "items first seen by the user after the cut",
    }
    return Split(train, valid, test, protocol, frame.filter((k > t_valid) & (k <= t_test)))


def _future_eval(past: Interactions, future: pl.DataFrame, n_users: int) -> EvalSet:
    c = Columns
    past_seqs = past.sequences()
    has_past = past_seqs.lengths > 0
    fut = future.select(c.USER, c.ITEM).unique(maintain_order=True)
    fut = fut.join(past.frame.select(c.USER, c.ITEM).unique(), on=[c.USER, c.ITEM], how="anti")
    fut = fut.filter(pl.Series(has_past[fut.get_column(c.USER).to_numpy()])).sort(c.USER, maintain_order=True)
    fu = fut.get_column(c.USER).to_numpy().astype(np.int64)
    users = np.unique(fu)
    counts = np.bincount(fu, minlength=n_users)[users]
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    targets = Histories(indptr, fut.get_column(c.ITEM).to_numpy().astype(np.int64))
    hist = past_seqs.take(users)
    return EvalSet(users, hist, targets, hist)


def k_core(data: Interactions, k_user: int = 5, k_item: int = 5, max_rounds: int = 100) -> Interactions:
    """Iteratively drop users and items with fewer than k interactions; re-index densely."""
    c = Columns
    frame = data.frame
    for _ in range(max_rounds):
        before = frame.height
        frame = frame.filter(pl.len().over(c.ITEM) >= k_item)
        frame = frame.filter(pl.len().over(c.USER) >= k_user)
        if frame.height == before:
            break
    if frame.height == 0:
        raise ValueError(f"{k_user}/{k_item}-core filtering left no interactions")
    raw = frame.with_columns(
        pl.Series(c.USER, data.users.external.to_numpy()[frame.get_column(c.USER).to_numpy()]),
        pl.Series(c.ITEM, data.items.external.to_numpy()[frame.get_column(c.ITEM).to_numpy()]),
    ).sort(c.POSITION)
    return Interactions.from_frame(raw, meta=data.meta, name=data.name)
