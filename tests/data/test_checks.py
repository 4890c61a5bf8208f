"""Data checks before training (data/checks.py): each trap found, typed, and named with its flag."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import pytest

from playnext.data.checks import Cleaning, Finding, check, prepare, refusal, time_unit, to_seconds
from playnext.data.interactions import Columns, Interactions
from playnext.data.split import deduplicate, leave_one_out
from playnext.errors import DataError

C = Columns


Row = tuple[str, str, int | None]


def _log(rows: Sequence[Row]) -> Interactions:
    users, items, times = zip(*rows, strict=True)
    frame = pl.DataFrame(
        {C.USER: list(users), C.ITEM: list(items), C.TIMESTAMP: list(times)},
        schema={C.USER: pl.String, C.ITEM: pl.String, C.TIMESTAMP: pl.Int64},
    )
    return Interactions.from_frame(frame)


def _walks(n_users: int = 20, length: int = 6, t0: int = 1_600_000_000) -> list[Row]:
    """Every user walks items in order, one event a minute: no repeats, nothing to warn about."""
    return [
        (f"u{u}", f"i{(u + j) % 15}", t0 + 60 * (u * length + j))
        for u in range(n_users)
        for j in range(length)
    ]


def _by_check(data: Interactions, **kw: bool) -> dict[str, Finding]:
    return {f.check: f for f in check(data, **kw)}


def test_a_clean_log_only_says_its_time_range() -> None:
    found = check(_log(_walks()))
    assert [f.check for f in found] == ["time_range"]
    assert found[0].message.startswith("events from 2020-09-13")


def test_every_row_twice_is_found_twice_and_dedupe_clears_it() -> None:
    rows = _walks()
    data = _log(rows + rows)  # every row duplicated: today this trains and scores exactly 0
    found = _by_check(data)
    dup, seen = found["duplicates"], found["seen_targets"]
    assert dup.facts["rows"] == len(rows) and dup.flag == "--dedupe" and "--dedupe" in dup.message
    assert seen.facts["share"] == 1.0 and seen.severity == "warning"
    assert "--repeats" in seen.message and "--dedupe" in seen.message
    clean, notes = prepare(data, Cleaning(dedupe=True))
    assert len(clean) == len(rows)
    assert {f.check for f in notes} == {"dedupe", "time_range"}


def test_seen_targets_share_matches_leave_one_out() -> None:
    rows = _walks(n_users=10)
    rows += [(f"u{u}", f"i{u % 15}", 1_700_000_000) for u in range(4)]  # 4 users end on their first item
    data = _log(rows)
    split = leave_one_out(data)
    seen = [
        int(t) in set(h.tolist()) for h, t in zip(split.test.history, split.test.targets.items, strict=True)
    ]
    finding = _by_check(data)["seen_targets"]
    assert finding.facts["seen"] == sum(seen) == 4
    assert finding.facts["share"] == pytest.approx(0.4)
    assert finding.message.startswith("40% of test targets (4 of 10)")
    repeats = _by_check(data, repeats=True)["seen_targets"]  # under --repeats they are candidates
    assert repeats.severity == "info" and "candidates under --repeats" in repeats.message


def test_a_few_seen_targets_are_not_worth_a_line() -> None:
    rows = [*_walks(n_users=40), ("u0", "i0", 1_700_000_000)]  # 1 of 40 = 2.5 %
    assert "seen_targets" not in _by_check(_log(rows))


@pytest.mark.parametrize(
    ("scale", "unit"),
    [(1, "seconds"), (1000, "milliseconds"), (10**6, "microseconds"), (10**9, "nanoseconds")],
)
def test_timestamp_units_are_read_from_their_magnitude_and_converted_once(scale: int, unit: str) -> None:
    rows = [(u, i, t * scale if t is not None else None) for u, i, t in _walks()]
    data = _log(rows)
    assert time_unit(data.frame.get_column(C.TIMESTAMP)) == (unit, scale)
    converted, notes = prepare(data)
    assert converted.frame.get_column(C.TIMESTAMP).max() == 1_600_000_000 + 60 * (20 * 6 - 1)
    said = [f for f in notes if f.check == "time_unit"]
    assert len(said) == (0 if scale == 1 else 1)
    if said:
        assert unit in said[0].message and "converted to seconds" in said[0].message
        assert to_seconds(converted)[1] is None  # converted once: seconds stay seconds


def test_milliseconds_within_one_second_keep_their_order() -> None:
    # the file lists a user's two events of one second out of order; the milliseconds order them
    data = _log(
        [
            ("u", "late", 1_600_000_000_900),
            ("u", "early", 1_600_000_000_100),
            ("u", "next", 1_600_000_005_000),
        ]
    )
    converted, _ = to_seconds(data)
    again = Interactions.from_frame(
        converted.frame.with_columns(
            pl.Series(C.USER, converted.users.to_external(converted.user_idx)),
            pl.Series(C.ITEM, converted.items.to_external(converted.item_idx)),
        )
    )  # rebuilt from seconds (k-core does this): positions still break the tie the right way
    for d in (converted, again):
        assert d.items.to_external(d.sequences()[0]) == ["early", "late", "next"]


def test_users_the_split_cannot_evaluate_are_counted() -> None:
    rows = [*_walks(n_users=10), ("short1", "i1", 1), ("short2", "i2", 1), ("short2", "i3", 2)]
    found = _by_check(_log(rows))["short_users"]
    assert found.facts["users"] == 2 and found.severity == "info"
    assert (
        found.message.startswith("2 of 12 users have fewer than 3 events") and "--k-core 3" in found.message
    )


def test_nobody_to_evaluate_and_a_one_item_catalog_are_refusals() -> None:
    only_short = _log([("a", "x", 1), ("a", "y", 2), ("b", "x", 3)])
    found = _by_check(only_short)
    assert found["short_users"].severity == "error"
    one_item = _log([("a", "x", t) for t in range(5)])
    found = _by_check(one_item)
    assert found["catalog"].severity == "error"
    assert found["catalog"].message == "the catalog has 1 item: a ranking needs at least 2"
    error = refusal(check(one_item))
    assert isinstance(error, DataError) and "a ranking needs at least 2" in str(error)
    assert refusal(check(_log(_walks()))) is None


def test_no_timestamps_is_said() -> None:
    data = _log([(u, i, None) for u, i, _ in _walks()])
    assert _by_check(data)["time_range"].message == "no timestamps: each user's events are in file order"


def test_k_core_says_what_it_kept_and_refuses_an_empty_result() -> None:
    rows = [*_walks(n_users=10), ("short", "rare", 1)]
    kept, notes = prepare(_log(rows), Cleaning(k_core=2))
    note = next(f for f in notes if f.check == "k_core")
    assert note.facts["users"] == [11, 10] and note.flag == "--k-core"
    assert "short" not in kept.users
    with pytest.raises(DataError, match="--k-core 100 leaves no events"):
        prepare(_log(rows), Cleaning(k_core=100))


def test_dedupe_keeps_the_first_of_each_pair_and_the_api_uses_it() -> None:
    import playnext as pn

    data = _log([("a", "x", 1), ("a", "y", 2), ("a", "x", 3), ("b", "x", 1)])
    kept = deduplicate(data)
    assert kept.frame.get_column(C.TIMESTAMP).to_list() == [1, 2, 1]
    frame = pl.DataFrame(
        {"user": ["a", "a", "a", "b"], "item": ["x", "y", "x", "x"], "timestamp": [1, 2, 3, 1]}
    )
    api = pn.Dataset.from_frame(frame).deduplicate()
    assert api.interactions.frame.equals(deduplicate(pn.Dataset.from_frame(frame).interactions).frame)


def test_findings_are_json_ready() -> None:
    import json

    rows = _walks()
    for f in check(_log(rows + rows)):
        doc = f.to_dict()
        assert set(doc) == {"check", "severity", "message", "flag", "facts"}
        json.dumps(doc)


def test_a_notebook_gets_the_same_findings() -> None:
    import playnext as pn

    rows = _walks()
    frame = pl.DataFrame(rows + rows, schema=["user", "item", "timestamp"], orient="row")
    found = pn.Dataset.from_frame(frame).checks()
    assert [f.check for f in found] == ["duplicates", "seen_targets", "time_range"]
