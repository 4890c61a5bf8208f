"""Splits that match published protocols: leave-one-out over a stable time order, global temporal.

The order comes from `Interactions` (timestamp, ties by file position), so two runs — or two
toolkits reading the same file — agree on every test target.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from playnext.data.interactions import Columns, Histories, IdMap, Interactions
from playnext.errors import ConfigError, DataError


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


MIN_LENGTH = 3
"""Events a user needs to be evaluated under leave-one-out: one to train on, a validation and a test."""


def leave_one_out(data: Interactions, min_length: int = MIN_LENGTH) -> Split:
    """Last item of each user = test, second-last = validation, the rest = train.

    Users with fewer than `min_length` interactions keep everything in train and are not
    evaluated (the SASRec/BERT4Rec convention). The test question's history includes the
    validation item; the model is *not* refit on it unless asked (`Split.train_and_valid`).
    Repeated items stay as they are: a target may be an item already in its history (a
    re-listen), which the repeat-aware protocol (`Split.unmasked`) keeps as a candidate.
    When every event has a timestamp, each question knows its history's times
    (`Histories.times`) and is asked at its target's (`Histories.at`): a production request
    knows both.
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
    ts = data.frame.get_column(Columns.TIMESTAMP)
    seconds = ts.cast(pl.Int64).to_numpy() if n and ts.null_count() == 0 else None
    if seconds is not None:  # the histories' event times (train rows of eligible users, in order)
        train_seqs = train_seqs.with_times(seconds[eligible & ~(is_test | is_valid)])
        valid_t = valid_t.with_times(seconds[is_valid])
    test_t = Histories(one, seqs.items[is_test])
    test_hist = train_seqs.concat_rows(valid_t)
    if seconds is not None:  # when each question is asked: its target's time
        train_seqs, test_hist = train_seqs.with_at(seconds[is_valid]), test_hist.with_at(seconds[is_test])
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
    the cut are evaluated. With timestamps, each question knows its history's times
    (`Histories.times`) and is asked (`Histories.at`) at the user's first event after the cut."""
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
    ts, past_ts = future.get_column(c.TIMESTAMP), past.frame.get_column(c.TIMESTAMP)
    if len(ts) and ts.null_count() == 0 and past_ts.null_count() == 0:
        # asked when the user came back (the window's first event), knowing the history's times
        first = future.group_by(c.USER).agg(pl.col(c.TIMESTAMP).min())
        at = np.zeros(n_users, dtype=np.int64)
        at[first.get_column(c.USER).to_numpy()] = first.get_column(c.TIMESTAMP).to_numpy()
        hist = past_seqs.with_times(past_ts.cast(pl.Int64).to_numpy()).take(users).with_at(at[users])
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


def deduplicate(data: Interactions) -> Interactions:
    """Keep the first of each repeated (user, item) pair: a log where re-consumption is noise.

    The canonical order puts a pair's earliest row first; every item keeps its first row, so
    the id maps stay as they are.
    """
    first = pl.int_range(pl.len()).over(Columns.USER, Columns.ITEM) == 0
    return data.replace(data.frame.filter(first))


COLD_BY = ("time", "random")


def parse_cold(spec: str) -> tuple[str, float]:
    """'random:0.1' / 'time:0.05' → (by, fraction), refused with the form it takes."""
    by, _, frac = spec.partition(":")
    try:
        fraction = float(frac) if frac else 0.1
    except ValueError:
        fraction = -1.0
    if by not in COLD_BY or not 0 < fraction < 1:
        raise ConfigError(
            f"cold must be BY[:FRACTION], BY one of {', '.join(COLD_BY)}, 0 < FRACTION < 1; got {spec!r}"
        )
    return by, fraction


@dataclass(frozen=True)
class ColdSplit:
    """Items held out of training entirely, and the questions whose answer is one of them.

    `warm` is the log without the cold items (its own item ids 0..W-1, users unchanged), split
    by leave-one-out for training, model choice and the warm test. `cold` asks, for every user
    who reaches a cold item after at least `min_history` warm events, for that first cold item:
    its history is the user's warm events before it, its target is W + j for cold item j, and
    `cold_meta` row j describes item j. `cold_counts[r, j]` is how many events cold item j had
    before question r's target: the popularity a live system has seen by then, without training.
    """

    warm: Split
    warm_log: Interactions  # the whole log without the cold items (what `warm` was split from)
    cold: EvalSet
    cold_meta: pl.DataFrame
    cold_items: IdMap
    cold_counts: np.ndarray  # (questions, C)
    protocol: dict[str, object]

    @property
    def n_warm(self) -> int:
        return self.warm.train.n_items

    @property
    def n_cold(self) -> int:
        return len(self.cold_items)

    def halves(self, seed: int = 0) -> tuple[ColdSplit, ColdSplit]:
        """(validation, test): the questions of a seeded half of their users, and the rest.

        Anything tuned on cold questions (the live-popularity weight) is chosen on the first and
        reported on the second, as a model is chosen on validation users."""
        rows = np.random.default_rng(seed).permutation(len(self.cold))
        cut = len(rows) // 2
        return self._take(np.sort(rows[:cut])), self._take(np.sort(rows[cut:]))

    def _take(self, rows: np.ndarray) -> ColdSplit:
        return replace(self, cold=self.cold.take(rows), cold_counts=self.cold_counts[rows])


def cold_item_split(
    data: Interactions, fraction: float = 0.1, by: str = "time", seed: int = 0, min_history: int = 3
) -> ColdSplit:
    """Hold out a `fraction` of the items as never seen in training.

    by="time": the items whose first event falls in the last `fraction` of the log's events
    (stable time order: timestamp, then file position), i.e. the newest arrivals; by="random":
    a seeded random `fraction` of the catalog, whatever its age (more questions, and popular
    items among them).
    """
    if by not in COLD_BY:
        raise ValueError(f"by must be one of {', '.join(COLD_BY)}, got {by!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    c = Columns
    frame = data.frame
    n = len(frame)
    order = np.lexsort(
        (frame.get_column(c.POSITION).to_numpy(), frame.get_column(c.TIMESTAMP).fill_null(0).to_numpy())
    )
    when = np.empty(n, dtype=np.int64)
    when[order] = np.arange(n)  # each event's place in global time
    items = data.item_idx
    if by == "time":
        first = np.full(data.n_items, n, dtype=np.int64)
        np.minimum.at(first, items, when)
        is_cold = first >= int(np.ceil((1 - fraction) * n))
    else:
        rng = np.random.default_rng(seed)
        is_cold = np.zeros(data.n_items, dtype=bool)
        is_cold[rng.choice(data.n_items, size=max(1, round(fraction * data.n_items)), replace=False)] = True
    if not is_cold.any() or is_cold.all():
        raise ValueError(f"cold split by {by} at {fraction} leaves {int(is_cold.sum())} cold items")
    warm_ids, cold_ids = np.flatnonzero(~is_cold), np.flatnonzero(is_cold)
    new_id = np.full(data.n_items, -1, dtype=np.int64)
    new_id[warm_ids] = np.arange(len(warm_ids))
    new_id[cold_ids] = len(warm_ids) + np.arange(len(cold_ids))  # a question's target id
    warm_rows = ~is_cold[items]
    warm_frame = frame.filter(pl.Series(warm_rows)).with_columns(
        pl.Series(c.ITEM, new_id[items[warm_rows]].astype(np.int32))
    )
    warm_items = IdMap(data.items.external.gather(pl.Series(warm_ids)))
    warm = Interactions(
        warm_frame, data.users, warm_items, data.meta[warm_ids], data.name, data.vocab or data.event_names
    )

    # the questions: each user's first cold event, after at least `min_history` warm ones
    users = data.user_idx
    seqs = data.sequences()
    first_cold = np.full(data.n_users, -1, dtype=np.int64)
    cold_rows = np.flatnonzero(is_cold[items])[::-1]  # reversed: the earliest write wins
    first_cold[users[cold_rows]] = cold_rows
    q_users, q_rows, hist = [], [], []
    for u in np.flatnonzero(first_cold >= 0):
        lo, r = int(seqs.indptr[u]), int(first_cold[u])
        before = seqs.items[lo:r]  # every event before it is warm
        if len(before) >= min_history:
            q_users.append(u)
            q_rows.append(r)
            hist.append(new_id[before])
    q_rows_a = np.asarray(q_rows, dtype=np.int64)
    history = Histories.from_lists(hist)
    targets = Histories(np.arange(len(q_rows) + 1, dtype=np.int64), new_id[items[q_rows_a]])
    cold = EvalSet(np.asarray(q_users, dtype=np.int64), history, targets, history)
    counts = np.zeros((len(q_rows), len(cold_ids)), dtype=np.float32)
    t_q = when[q_rows_a]
    cold_events = np.flatnonzero(is_cold[items])
    by_item = new_id[items[cold_events]] - len(warm_ids)
    for j in range(len(cold_ids)):
        times = np.sort(when[cold_events[by_item == j]])
        counts[:, j] = np.searchsorted(times, t_q)  # events of item j strictly before each target
    protocol = {
        "split": "cold items",
        "cold_by": by,
        "cold_fraction": fraction,
        "cold_items": len(cold_ids),
        "warm_items": len(warm_ids),
        "questions": "each user's first event on a cold item, history = the warm events before it",
        "min_history": min_history,
        "warm_protocol": "leave-one-out on the log without the cold items",
    }
    return ColdSplit(
        leave_one_out(warm),
        warm,
        cold,
        data.meta[cold_ids],
        IdMap(data.items.external.gather(pl.Series(cold_ids))),
        counts,
        protocol,
    )
