"""IdMap, Histories and Interactions.from_frame against naive Python equivalents."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playnext.data.interactions import Histories, IdMap, Interactions
from playnext.errors import PlaynextError, UnknownIdError

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.lists(st.text(min_size=0, max_size=6), max_size=30, unique=True)
rows_strategy = st.lists(st.lists(st.integers(0, 50), max_size=6), max_size=12)


# ---- IdMap ----------------------------------------------------------------------------------


@SETTINGS
@given(ids)
def test_idmap_round_trips(external):
    m = IdMap(external)
    assert len(m) == len(external)
    idx = m.to_internal(external)
    assert idx.tolist() == list(range(len(external)))
    assert idx.dtype == np.int64
    assert m.to_external(idx) == external
    assert m.to_external(list(reversed(range(len(external))))) == external[::-1]
    assert all(x in m for x in external)
    assert m == IdMap(pl.Series(external, dtype=pl.String))


def test_idmap_keeps_ids_as_strings():
    m = IdMap(pl.Series([10, 2, 33]))
    assert m.external.to_list() == ["10", "2", "33"]
    assert m.to_internal([2, "33", 10]).tolist() == [1, 2, 0]
    assert 33 in m and "33" in m and 4 not in m
    assert m.to_external([]) == []
    assert m.to_external(np.array([], dtype=np.int64)) == []


def test_idmap_rejects_duplicates():
    with pytest.raises(ValueError, match="unique"):
        IdMap(["a", "b", "a"])


@SETTINGS
@given(ids, st.lists(st.text(max_size=6), max_size=15))
def test_unknown_ids_raise_and_are_named(external, queries):
    m = IdMap(external)
    unknown = [q for q in queries if q not in set(external)]
    lax = m.to_internal(queries, strict=False)
    assert lax.tolist() == [external.index(q) if q in external else -1 for q in queries]
    if not unknown:
        assert m.to_internal(queries).tolist() == lax.tolist()
        return
    with pytest.raises(UnknownIdError) as info:
        m.to_internal(queries, kind="user")
    err = info.value
    assert isinstance(err, KeyError) and isinstance(err, PlaynextError)
    assert err.kind == "user" and err.ids == unknown
    assert "unknown user id(s)" in str(err)
    for q in unknown[:10]:
        assert q in str(err)


def test_unknown_id_message_is_truncated_after_ten():
    m = IdMap(["a"])
    missing = [f"zz{i}" for i in range(12)]
    with pytest.raises(UnknownIdError) as info:
        m.to_internal(["a", *missing])
    msg = str(info.value)
    assert "zz0" in msg and "zz9" in msg and "zz10" not in msg and "…" in msg
    assert info.value.ids == missing
    assert msg.startswith("unknown item id(s)")


# ---- Histories ----------------------------------------------------------------------------


@SETTINGS
@given(rows_strategy)
def test_histories_from_lists_and_accessors(rows):
    h = Histories.from_lists(rows)
    assert len(h) == len(rows)
    assert [h[r].tolist() for r in range(len(rows))] == rows
    assert h.lengths.tolist() == [len(r) for r in rows]
    assert h.row_ids().tolist() == [r for r, row in enumerate(rows) for _ in row]
    assert h.items.dtype == np.int64 and h.indptr.dtype == np.int64


@SETTINGS
@given(rows_strategy, st.data())
def test_histories_take_equals_list_indexing(rows, data):
    h = Histories.from_lists(rows)
    picks = data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=20)) if rows else []
    out = h.take(np.asarray(picks, dtype=np.int64))
    assert [out[r].tolist() for r in range(len(out))] == [rows[p] for p in picks]
    assert out.indptr[0] == 0 and out.indptr[-1] == len(out.items)


@SETTINGS
@given(
    st.lists(
        st.tuples(st.lists(st.integers(0, 50), max_size=6), st.lists(st.integers(0, 50), max_size=6)),
        max_size=12,
    )
)
def test_histories_concat_rows_equals_list_concatenation(pairs):
    a = Histories.from_lists([p[0] for p in pairs])
    b = Histories.from_lists([p[1] for p in pairs])
    out = a.concat_rows(b)
    assert [out[r].tolist() for r in range(len(out))] == [x + y for x, y in pairs]
    # taking rows commutes with concatenation
    rows = np.arange(len(pairs))[::-1].copy()
    assert np.array_equal(out.take(rows).items, a.take(rows).concat_rows(b.take(rows)).items)


def test_histories_validation():
    with pytest.raises(ValueError, match="malformed"):
        Histories(np.array([0, 2]), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="malformed"):
        Histories(np.array([1, 3]), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="row counts"):
        Histories.from_lists([[1]]).concat_rows(Histories.from_lists([[1], [2]]))
    empty = Histories.from_lists([])
    assert len(empty) == 0 and len(empty.take(np.zeros(0, dtype=np.int64))) == 0


# ---- Interactions.from_frame --------------------------------------------------------------


@st.composite
def raw_logs(draw):
    n = draw(st.integers(1, 30))
    user = st.sampled_from(["ann", "bob", "cy", "dee"])
    item = st.sampled_from([f"m{i}" for i in range(6)])
    ts = draw(st.sampled_from([st.integers(0, 3), st.none(), st.one_of(st.none(), st.integers(0, 3))]))
    return [(draw(user), draw(item), draw(ts)) for _ in range(n)]


def to_frame(events):
    return pl.DataFrame(
        {
            "user": [e[0] for e in events],
            "item": [e[1] for e in events],
            "timestamp": pl.Series([e[2] for e in events], dtype=pl.Int64),
        }
    )


@SETTINGS
@given(raw_logs())
def test_from_frame_ids_order_and_stats(events):
    data = Interactions.from_frame(to_frame(events))
    users = list(dict.fromkeys(e[0] for e in events))
    items = list(dict.fromkeys(e[1] for e in events))
    assert data.users.external.to_list() == users  # numbered by first appearance
    assert data.items.external.to_list() == items
    assert data.frame.columns == ["user", "item", "timestamp", "position", "weight", "event"]
    # per-user stable time order: timestamp (missing last), then file line
    expected = sorted(
        ((users.index(u), e[2], p, items.index(e[1])) for p, e in enumerate(events) for u in [e[0]]),
        key=lambda r: (r[0], r[1] is None, r[1] or 0, r[2]),
    )
    got = list(data.frame.select("user", "timestamp", "position", "item").iter_rows())
    assert got == expected
    seqs = data.sequences()
    assert [seqs[u].tolist() for u in range(len(users))] == [
        [r[3] for r in expected if r[0] == u] for u in range(len(users))
    ]
    assert data.frame.get_column("weight").to_list() == [1.0] * len(events)
    assert data.item_counts().tolist() == [sum(e[1] == i for e in events) for i in items]
    stats = data.stats()
    assert {"users", "items", "interactions"} <= set(stats)
    assert (stats["users"], stats["items"], stats["interactions"]) == (len(users), len(items), len(events))
    assert stats["unique_pairs"] == len({(e[0], e[1]) for e in events})
    assert stats["has_timestamps"] == any(e[2] is not None for e in events)
    assert stats["sequence_length"]["max"] == max(sum(e[0] == u for e in events) for u in users)
    assert len(data) == len(events) and data.n_users == len(users) and data.n_items == len(items)


@SETTINGS
@given(raw_logs(), st.randoms(use_true_random=False))
def test_from_frame_order_depends_only_on_time_and_position(events, rnd):
    base = Interactions.from_frame(to_frame(events))
    order = list(range(len(events)))
    rnd.shuffle(order)
    shuffled = to_frame([events[j] for j in order]).with_columns(position=pl.Series(order, dtype=pl.Int64))
    other = Interactions.from_frame(shuffled)

    def ext_rows(d: Interactions):
        return [
            (d.users.external[u], d.items.external[i], t, p)
            for u, i, t, p in d.frame.select("user", "item", "timestamp", "position").iter_rows()
        ]

    def by_user(d: Interactions):
        out: dict[str, list] = {}
        for row in ext_rows(d):
            out.setdefault(row[0], []).append(row)
        return out

    assert by_user(other) == by_user(base)


def test_from_frame_example_ties_and_columns():
    raw = pl.DataFrame(
        {
            "user": [7, 7, 8, 7],
            "item": [1, 2, 1, 3],
            "timestamp": [20, 10, 5, 10],
            "weight": [1, 2, 3, 4],
            "event": ["play", "skip", None, "play"],
        }
    )
    data = Interactions.from_frame(raw, name="toy")
    assert data.users.external.to_list() == ["7", "8"]
    assert data.items.external.to_list() == ["1", "2", "3"]
    rows = data.frame.select("user", "item", "timestamp", "position", "weight", "event").rows()
    assert rows == [
        (0, 1, 10, 1, 2.0, "skip"),  # ts tie 10: file line 1 before line 3
        (0, 2, 10, 3, 4.0, "play"),
        (0, 0, 20, 0, 1.0, "play"),
        (1, 0, 5, 2, 3.0, None),
    ]
    assert data.frame.schema["weight"] == pl.Float32
    stats = data.stats()
    assert stats["dataset"] == "toy"
    assert stats["events"]["play"] == 2 and stats["events"]["skip"] == 1
    assert len(data.meta) == 3 and data.titles([2, 0]) == ["3", "1"]


def test_from_frame_with_item_map_and_errors():
    catalog = IdMap(["a", "b", "c"])
    data = Interactions.from_frame(pl.DataFrame({"user": ["u", "u"], "item": ["c", "a"]}), items=catalog)
    assert data.n_items == 3 and data.item_idx.tolist() == [2, 0]
    assert data.item_counts().tolist() == [1, 0, 1]
    with pytest.raises(UnknownIdError) as info:
        Interactions.from_frame(pl.DataFrame({"user": ["u", "v"], "item": ["a", "zz"]}), items=catalog)
    assert info.value.ids == ["zz"] and "zz" in str(info.value)
    with pytest.raises(ValueError, match="no interactions"):
        Interactions.from_frame(
            pl.DataFrame({"user": [], "item": []}, schema={"user": pl.String, "item": pl.String})
        )


def test_replace_keeps_maps():
    data = Interactions.from_frame(pl.DataFrame({"user": ["u", "u", "v"], "item": ["a", "b", "a"]}))
    sub = data.replace(data.frame.head(1))
    assert sub.users is data.users and sub.items is data.items and len(sub) == 1
    assert sub.sequences().lengths.tolist() == [1, 0]
