"""Splits checked against list-based reference implementations over the raw event log."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playnext.data.interactions import Interactions
from playnext.data.split import EvalSet, k_core, leave_one_out, temporal_split
from playnext.errors import DataError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Event = tuple[str, str, int | None]  # (user, item, timestamp), in file order


def frame(events: list[Event], positions: list[int] | None = None) -> pl.DataFrame:
    data = {
        "user": [e[0] for e in events],
        "item": [e[1] for e in events],
        "timestamp": pl.Series([e[2] for e in events], dtype=pl.Int64),
    }
    if positions is not None:
        data["position"] = positions
    return pl.DataFrame(data)


@st.composite
def logs(draw, max_events: int = 40, timestamps: str = "any") -> list[Event]:
    n = draw(st.integers(1, max_events))
    users = st.sampled_from([f"u{i}" for i in range(6)])
    items = st.sampled_from([f"i{i}" for i in range(8)])
    mode = draw(st.sampled_from(["ties", "wide", "none"])) if timestamps == "any" else timestamps
    if mode == "none":
        ts = st.none()
    elif mode == "ties":
        ts = st.integers(0, 3)
    else:
        ts = st.integers(0, 10_000)
    return [(draw(users), draw(items), draw(ts)) for _ in range(n)]


def user_sequences(events: list[Event], positions: list[int] | None = None) -> dict[str, list[tuple]]:
    """Each user's events in stable time order: timestamp (missing last), then file position."""
    pos = positions if positions is not None else list(range(len(events)))
    by_user: dict[str, list[tuple]] = {}
    for p, (u, i, t) in zip(pos, events, strict=True):
        by_user.setdefault(u, []).append((t, p, i))
    return {u: sorted(evs, key=lambda e: (e[0] is None, e[0] or 0, e[1])) for u, evs in by_user.items()}


def ext_rows(data: Interactions, ev: EvalSet, which: str) -> dict[str, list[str]]:
    hist = getattr(ev, which)
    users = data.users.to_external(ev.users)
    return {u: data.items.to_external(hist[r]) for r, u in enumerate(users)}


def loo_external(data: Interactions, min_length: int = 3) -> dict[str, object]:
    split = leave_one_out(data, min_length)
    train = split.train.sequences()
    return {
        "users": data.users.to_external(split.test.users),
        "valid_users": data.users.to_external(split.valid.users),
        "train": {
            u: data.items.to_external(train[r])
            for r, u in enumerate(data.users.external.to_list())
            if len(train[r])
        },
        **{
            f"{name}.{w}": ext_rows(data, getattr(split, name), w)
            for name in ("valid", "test")
            for w in ("history", "targets", "exclude")
        },
    }


# ---- leave-one-out --------------------------------------------------------------------------


@SETTINGS
@given(logs(), st.integers(2, 5))
def test_leave_one_out_equals_reference(events, min_length):
    data = Interactions.from_frame(frame(events))
    got = loo_external(data, min_length)
    seqs = {u: [e[2] for e in evs] for u, evs in user_sequences(events).items()}
    first_seen = list(dict.fromkeys(e[0] for e in events))  # internal user ids follow the file
    evaluated = [u for u in first_seen if len(seqs[u]) >= min_length]
    assert got["users"] == got["valid_users"] == evaluated
    for u in first_seen:
        s = seqs[u]
        if u in evaluated:
            assert got["test.targets"][u] == [s[-1]]
            assert got["valid.targets"][u] == [s[-2]]
            assert got["valid.history"][u] == got["valid.exclude"][u] == s[:-2]
            assert got["test.history"][u] == got["test.exclude"][u] == s[:-1]  # train + valid item
            assert got["train"].get(u, []) == s[:-2]
        else:
            assert got["train"][u] == s  # all-train, not evaluated


@SETTINGS
@given(logs(timestamps="ties"))
def test_leave_one_out_default_threshold(events):
    data = Interactions.from_frame(frame(events))
    split = leave_one_out(data)
    counts = Counter(e[0] for e in events)
    assert sorted(data.users.to_external(split.test.users)) == sorted(u for u, c in counts.items() if c >= 3)
    assert len(split.train) == len(events) - 2 * len(split.test)
    assert split.train.n_items == data.n_items and split.train.n_users == data.n_users
    assert np.all(split.test.targets.lengths == 1) and np.all(split.valid.targets.lengths == 1)
    # train rows keep every column of the original events, in canonical order
    cols = ["user", "item", "timestamp", "position", "weight", "event"]
    train_rows = list(split.train.frame.select(cols).iter_rows())
    assert set(train_rows) <= set(data.frame.select(cols).iter_rows())
    assert split.train.frame.equals(
        split.train.frame.sort(["user", "timestamp", "position"], nulls_last=True)
    )
    # the held-out rows are exactly each evaluated user's two latest events
    dropped = data.frame.join(split.train.frame, on="position", how="anti")
    last_two = (
        data.frame.group_by("user", maintain_order=True)
        .tail(2)
        .filter(pl.col("user").is_in(split.test.users.tolist()))
    )
    assert sorted(dropped.get_column("position").to_list()) == sorted(
        last_two.get_column("position").to_list()
    )


@pytest.mark.parametrize("min_length", [1, 0, -3])
def test_leave_one_out_rejects_min_length_below_two(min_length):
    data = Interactions.from_frame(frame([("a", "x", 1), ("b", "x", 1), ("b", "y", 2)]))
    with pytest.raises(ValueError, match="min_length"):
        leave_one_out(data, min_length)


def test_same_timestamp_keeps_file_order():
    events = [
        ("a", "x", 5),
        ("a", "early", 1),
        ("b", "p", 7),
        ("a", "y", 5),  # same time as x, later in the file
        ("b", "q", 7),
        ("b", "r", 7),
        ("a", "z", 5),  # last line with ts 5 → test target
    ]
    data = Interactions.from_frame(frame(events))
    got = loo_external(data)
    assert got["users"] == ["a", "b"]
    assert got["test.targets"] == {"a": ["z"], "b": ["r"]}
    assert got["valid.targets"] == {"a": ["y"], "b": ["q"]}
    assert got["valid.history"] == {"a": ["early", "x"], "b": ["p"]}
    assert got["test.history"] == {"a": ["early", "x", "y"], "b": ["p", "q"]}


def test_missing_timestamps_sort_after_known_and_by_file_order():
    events = [("a", "n1", None), ("a", "t2", 2), ("a", "n2", None), ("a", "t1", 1)]
    got = loo_external(Interactions.from_frame(frame(events)))
    assert got["test.history"]["a"] == ["t1", "t2", "n1"]
    assert got["test.targets"]["a"] == ["n2"]


def test_short_users_are_not_evaluated():
    events = [("a", "x", 1), ("a", "y", 2), ("b", "x", 1), ("b", "y", 2), ("b", "z", 3), ("c", "z", 1)]
    data = Interactions.from_frame(frame(events))
    split = leave_one_out(data)
    assert data.users.to_external(split.test.users) == ["b"]
    train = split.train.sequences()
    assert [data.items.to_external(train[r]) for r in range(data.n_users)] == [["x", "y"], ["x"], ["z"]]


@SETTINGS
@given(logs(), st.randoms(use_true_random=False))
def test_leave_one_out_depends_on_row_order_only_via_position(events, rnd):
    base = loo_external(Interactions.from_frame(frame(events)))
    order = list(range(len(events)))
    rnd.shuffle(order)
    shuffled = frame([events[j] for j in order], positions=order)
    got = loo_external(Interactions.from_frame(shuffled))
    # internal ids follow the rows as read, so users come back in another order; all else is equal
    assert sorted(got.pop("users")) == sorted(base.pop("users"))
    assert sorted(got.pop("valid_users")) == sorted(base.pop("valid_users"))
    assert got == base


@SETTINGS
@given(logs(timestamps="wide"), st.randoms(use_true_random=False))
def test_distinct_timestamps_make_file_order_irrelevant(events, rnd):
    unique_times: dict[tuple[str, int | None], Event] = {}
    for e in events:  # one event per (user, timestamp): no ties left for file order to break
        unique_times.setdefault((e[0], e[2]), e)
    events = list(unique_times.values())
    base = loo_external(Interactions.from_frame(frame(events)))
    shuffled = list(events)
    rnd.shuffle(shuffled)
    got = loo_external(Interactions.from_frame(frame(shuffled)))
    # user/item numbering follows the file, so compare per user
    for key in ("valid.targets", "test.targets", "valid.history", "test.history", "train"):
        assert got[key] == base[key], key
    assert sorted(got["users"]) == sorted(base["users"])


@SETTINGS
@given(logs(), st.integers(2, 5))
def test_train_and_valid_is_everything_but_the_test_event(events, min_length):
    data = Interactions.from_frame(frame(events))
    split = leave_one_out(data, min_length)
    both = split.train_and_valid()
    seqs = {u: [e[2] for e in evs] for u, evs in user_sequences(events).items()}
    evaluated = set(data.users.to_external(split.test.users))
    rows = both.sequences()
    for r, u in enumerate(data.users.external.to_list()):
        assert data.items.to_external(rows[r]) == (seqs[u][:-1] if u in evaluated else seqs[u])
    assert both.frame.equals(both.frame.sort(["user", "timestamp", "position"], nulls_last=True))
    assert (both.n_users, both.n_items) == (data.n_users, data.n_items)


# ---- temporal split -------------------------------------------------------------------------


FRACTIONS = st.sampled_from([(0.25, 0.25), (0.125, 0.25), (0.375, 0.125), (0.5, 0.25), (0.125, 0.125)])


def reference_temporal(events: list[Event], tf: float, vf: float) -> tuple[int, dict[str, dict]]:
    """Global cut by the 'lower' quantile of event times (file position when there are none)."""
    keys = [e[2] for e in events] if events[0][2] is not None else list(range(len(events)))
    srt = sorted(keys)
    n = len(keys)
    t_test = srt[math.floor((1 - tf) * (n - 1))]  # dyadic fractions: exact in binary
    t_valid = srt[math.floor((1 - tf - vf) * (n - 1))]
    out = {}
    for name, past_max, lo, hi in (("valid", t_valid, t_valid, t_test), ("test", t_test, t_test, math.inf)):
        past = [(e, p) for p, (e, k) in enumerate(zip(events, keys, strict=True)) if k <= past_max]
        seen = {(e[0], e[1]) for e, _ in past}
        has_past = {e[0] for e, _ in past}
        targets: dict[str, set[str]] = {}
        for e, k in zip(events, keys, strict=True):
            if lo < k <= hi and e[0] in has_past and (e[0], e[1]) not in seen:
                targets.setdefault(e[0], set()).add(e[1])
        hist = user_sequences([e for e, _ in past], [p for _, p in past])
        out[name] = {"targets": targets, "history": {u: [x[2] for x in hist[u]] for u in targets}}
    n_train = sum(1 for k in keys if k <= t_valid)
    return n_train, out


@SETTINGS
@given(logs(max_events=50), FRACTIONS)
def test_temporal_split_equals_reference(events, fractions):
    tf, vf = fractions
    data = Interactions.from_frame(frame(events))
    split = temporal_split(data, tf, vf)
    n_train, ref = reference_temporal(events, tf, vf)
    assert len(split.train) == n_train
    for name in ("valid", "test"):
        ev = getattr(split, name)
        targets = {u: set(v) for u, v in ext_rows(data, ev, "targets").items()}
        assert targets == ref[name]["targets"], name
        assert ext_rows(data, ev, "history") == ref[name]["history"], name
        assert ext_rows(data, ev, "exclude") == ref[name]["history"], name
        assert np.all(np.diff(ev.users) > 0)
        assert np.all(ev.targets.lengths > 0)


@SETTINGS
@given(logs(max_events=50, timestamps="wide"), FRACTIONS)
def test_temporal_targets_are_new_and_after_the_cut(events, fractions):
    data = Interactions.from_frame(frame(events))
    split = temporal_split(data, *fractions)
    train_max = split.train.frame.get_column("timestamp").max()
    first = {  # (user, item) -> time of the first such event
        (u, i): t
        for u, i, t in data.frame.group_by("user", "item").agg(pl.col("timestamp").min()).iter_rows()
    }
    for ev in (split.valid, split.test):
        for r, u in enumerate(ev.users.tolist()):
            hist = ev.history[r].tolist()
            assert hist, "only users with a past are evaluated"
            cut = max(first[(u, h)] for h in hist)  # the user's past reaches at least this far
            for item in ev.targets[r].tolist():
                assert item not in hist  # never previously seen by this user
                assert first[(u, item)] > train_max  # never in train
                assert first[(u, item)] > cut  # after the cut: the first sighting is in the future


def test_temporal_split_small_example():
    events = [
        ("a", "x", 1),
        ("a", "y", 2),
        ("b", "x", 3),
        ("b", "y", 4),
        ("c", "q", 5),  # train: t <= 5
        ("a", "z", 6),
        ("d", "x", 7),  # valid: a's z is new; d has no past yet
        ("b", "z", 8),
        ("a", "z", 9),  # test: b's z is new; a saw z in the validation period
    ]
    data = Interactions.from_frame(frame(events))
    split = temporal_split(data, test_fraction=0.25, valid_fraction=0.25)
    assert len(split.train) == 5
    assert ext_rows(data, split.valid, "targets") == {"a": ["z"]}
    assert ext_rows(data, split.valid, "history") == {"a": ["x", "y"]}
    assert ext_rows(data, split.test, "targets") == {"b": ["z"]}
    assert ext_rows(data, split.test, "history") == {"b": ["x", "y"]}


def test_temporal_split_rejects_bad_fractions_and_partial_timestamps():
    data = Interactions.from_frame(frame([("a", "x", 1), ("a", "y", None), ("b", "x", 3)]))
    for tf, vf in ((0.0, 0.1), (0.1, 1.0), (0.6, 0.4)):
        with pytest.raises(ValueError, match="fractions"):
            temporal_split(data, tf, vf)
    with pytest.raises(DataError, match="timestamp"):
        temporal_split(data, 0.25, 0.25)


# ---- k-core ---------------------------------------------------------------------------------


def row_key(r: tuple) -> tuple:
    return (r[0], r[1], r[2] is None, r[2] or 0, r[3])


def reference_k_core(events: list[Event], ku: int, ki: int) -> list[tuple[str, str, int | None, int]]:
    rows = [(u, i, t, p) for p, (u, i, t) in enumerate(events)]
    while True:
        ic = Counter(r[1] for r in rows)
        kept = [r for r in rows if ic[r[1]] >= ki]
        uc = Counter(r[0] for r in kept)
        kept = [r for r in kept if uc[r[0]] >= ku]
        if len(kept) == len(rows):
            return rows
        rows = kept


@SETTINGS
@given(logs(max_events=60), st.integers(1, 4), st.integers(1, 4))
def test_k_core_equals_reference(events, ku, ki):
    data = Interactions.from_frame(frame(events))
    ref = reference_k_core(events, ku, ki)
    if not ref:
        with pytest.raises(ValueError, match="core"):
            k_core(data, ku, ki)
        return
    core = k_core(data, ku, ki)
    f = core.frame
    got = [
        (core.users.external[u], core.items.external[i], t, p)
        for u, i, t, p in f.select("user", "item", "timestamp", "position").iter_rows()
    ]
    assert sorted(got, key=row_key) == sorted(ref, key=row_key)
    assert np.all(np.bincount(core.user_idx) >= ku) and np.all(np.bincount(core.item_idx) >= ki)
    assert core.n_users == len({r[0] for r in ref}) and core.n_items == len({r[1] for r in ref})
    assert len(core.meta) == core.n_items
    # the canonical (user, time, file position) order survives re-indexing
    assert f.equals(f.sort(["user", "timestamp", "position"], nulls_last=True))
    seqs = core.sequences()
    ref_seqs = user_sequences([(u, i, t) for u, i, t, _ in ref], [p for *_, p in ref])
    for r, u in enumerate(core.users.external.to_list()):
        assert core.items.to_external(seqs[r]) == [e[2] for e in ref_seqs[u]]


@SETTINGS
@given(logs(max_events=50), FRACTIONS)
def test_temporal_train_and_valid_is_everything_up_to_the_test_cut(events, fractions):
    tf, vf = fractions
    data = Interactions.from_frame(frame(events))
    both = temporal_split(data, tf, vf).train_and_valid()
    keys = [e[2] for e in events] if events[0][2] is not None else list(range(len(events)))
    t_test = sorted(keys)[math.floor((1 - tf) * (len(keys) - 1))]
    past = [(e, p) for p, (e, k) in enumerate(zip(events, keys, strict=True)) if k <= t_test]
    ref = user_sequences([e for e, _ in past], [p for _, p in past])
    rows = both.sequences()
    got = {
        u: data.items.to_external(rows[r])
        for r, u in enumerate(data.users.external.to_list())
        if len(rows[r])
    }
    assert got == {u: [x[2] for x in evs] for u, evs in ref.items()}
    assert both.frame.equals(both.frame.sort(["user", "timestamp", "position"], nulls_last=True))


def test_repeats_survive_the_split_and_the_training_sequences():
    """Nothing dedupes a re-listen: the log, leave-one-out's targets and histories, and the
    sequence models' next-item targets keep it; `unmasked` drops only the exclusions."""
    from playnext.train.batches import next_item_arrays, split_next

    events: list[Event] = [("u", "a", 1), ("u", "b", 2), ("u", "a", 3), ("u", "c", 4), ("u", "a", 5)]
    data = Interactions.from_frame(frame(events))
    assert len(data) == 5
    split = leave_one_out(data)
    a = int(data.items.to_internal(["a"])[0])
    assert split.test.targets[0].tolist() == [a] and a in split.test.history[0]  # a repeat target
    assert a in split.test.exclude[0]  # the default protocol masks it ...
    open_ = split.unmasked()
    assert len(open_.test.exclude.items) == len(open_.valid.exclude.items) == 0  # ... this one does not
    assert open_.test.history[0].tolist() == split.test.history[0].tolist()
    assert open_.valid.targets[0].tolist() == split.valid.targets[0].tolist()
    assert "seen_items" in open_.protocol and "seen_items" not in split.protocol
    _, cropped = next_item_arrays(split.train.sequences(), max_len=10)
    _, targets = split_next(cropped)
    assert (targets == a + 1).sum() == 1  # train is a, b, a: the second a is a training target


# ---- when a question is asked: Histories.at and Histories.times (issue #32) ------------------


def test_histories_at_and_times_follow_take_select_and_concat():
    from playnext.data.interactions import Histories

    h = (
        Histories.from_lists([[1, 2], [3], []])
        .with_at(np.array([10, 20, 30]))
        .with_times(np.array([1, 2, 3]))
    )
    assert Histories.from_lists([[1]]).at is None and Histories.from_lists([[1]]).times is None
    took = h.take(np.array([2, 0, 0]))
    assert took.at.tolist() == [30, 10, 10] and took.times.tolist() == [1, 2, 1, 2]
    keep = np.array([False, True, True])  # the same 3 rows, fewer items
    same = h.select(keep, np.array([0, 1, 2, 2]))
    assert same.at.tolist() == [10, 20, 30] and same.times.tolist() == [2, 3]
    assert h.select(keep, np.array([0, 2])).at is None  # regrouped into other rows: no row's time
    typed = h.with_events(np.zeros(3), np.ones(3), ["play"])
    assert typed.at.tolist() == [10, 20, 30] and typed.times.tolist() == [1, 2, 3]
    both = typed.concat_rows(Histories.from_lists([[4], [], [5]]).with_times(np.array([7, 8])))
    assert both.at.tolist() == [10, 20, 30] and both.times.tolist() == [1, 2, 7, 3, 8]
    assert both.typed and h.concat_rows(Histories.from_lists([[4], [], [5]])).times is None
    with pytest.raises(ValueError, match="one time per row"):
        h.with_at(np.array([1, 2]))
    with pytest.raises(ValueError, match="align with items"):
        h.with_times(np.array([1, 2]))


@SETTINGS
@given(logs(), st.integers(2, 4))
def test_leave_one_out_asks_each_question_at_its_targets_time(events, min_length):
    data = Interactions.from_frame(frame(events))
    split = leave_one_out(data, min_length)
    timed = events[0][2] is not None
    seqs = user_sequences(events)  # (timestamp, position, item) in stable time order
    for ev, back in ((split.valid, 2), (split.test, 1)):
        for h in (ev.history, ev.exclude):
            assert (h.at is None) == (h.times is None) == (not timed)
        if h.at is None:
            continue
        for r, u in enumerate(data.users.to_external(ev.users)):
            s = seqs[u]
            assert ev.history.at[r] == ev.exclude.at[r] == s[-back][0]  # the target's timestamp
            rows = ev.history.times[ev.history.indptr[r] : ev.history.indptr[r + 1]]
            assert rows.tolist() == [e[0] for e in s[:-back]]  # the history's own times


@SETTINGS
@given(logs(max_events=50), FRACTIONS)
def test_temporal_questions_are_asked_when_the_user_comes_back(events, fractions):
    tf, vf = fractions
    split = temporal_split(Interactions.from_frame(frame(events)), tf, vf)
    data = Interactions.from_frame(frame(events))
    if events[0][2] is None:
        assert split.test.history.at is None and split.valid.history.at is None
        return
    keys = sorted(e[2] for e in events)
    n = len(keys)
    t_test, t_valid = keys[math.floor((1 - tf) * (n - 1))], keys[math.floor((1 - tf - vf) * (n - 1))]
    for ev, lo, hi in ((split.valid, t_valid, t_test), (split.test, t_test, math.inf)):
        for r, u in enumerate(data.users.to_external(ev.users)):
            came_back = min(e[2] for e in events if e[0] == u and lo < e[2] <= hi)
            assert ev.history.at[r] == came_back
            past = [e[0] for e in user_sequences(events)[u] if e[0] <= lo]
            assert ev.history.times[ev.history.indptr[r] : ev.history.indptr[r + 1]].tolist() == past
