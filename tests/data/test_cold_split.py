"""The cold-item split: what is held out, what is asked, and what a live system had counted."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from playnext.data.interactions import Interactions
from playnext.data.split import cold_item_split


def _log() -> Interactions:
    # items a..e arrive early; x and y arrive in the last events of the log
    rows = [
        ("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u1", "x", 20), ("u1", "d", 21),
        ("u2", "a", 4), ("u2", "c", 5), ("u2", "d", 6), ("u2", "e", 7), ("u2", "y", 22), ("u2", "x", 23),
        ("u3", "b", 8), ("u3", "e", 9), ("u3", "y", 24),
        ("u4", "a", 10), ("u4", "b", 11), ("u4", "c", 12), ("u4", "d", 13), ("u4", "e", 14), ("u4", "x", 25),
    ]  # fmt: skip
    return Interactions.from_frame(pl.DataFrame(rows, schema=["user", "item", "timestamp"], orient="row"))


def test_newest_items_are_held_out_and_asked_with_the_warm_events_before_them() -> None:
    data = _log()
    split = cold_item_split(data, 0.3, by="time", min_history=3)
    assert split.cold_items.external.to_list() == ["x", "y"]
    warm = split.warm
    assert sorted(warm.train.items.external.to_list()) == ["a", "b", "c", "d", "e"]
    n_warm = split.n_warm
    # the warm log keeps every warm event and no cold one (train + validation + test targets)
    assert len(warm.train) + len(warm.valid.targets.items) + len(warm.test.targets.items) == 15
    ext = {i: e for i, e in enumerate(warm.train.items.external.to_list())}
    ext.update({n_warm + j: e for j, e in enumerate(split.cold_items.external.to_list())})
    asked = {
        data.users.external[int(u)]: (
            [ext[int(i)] for i in split.cold.history[r]],
            ext[int(split.cold.targets[r][0])],
        )
        for r, u in enumerate(split.cold.users)
    }
    # u3 reached y after two warm events only: not asked; u2 is asked for y (its first cold item)
    assert asked == {
        "u1": (["a", "b", "c"], "x"),
        "u2": (["a", "c", "d", "e"], "y"),
        "u4": (["a", "b", "c", "d", "e"], "x"),
    }
    # events of x and y strictly before each question: u1 at t=20 (none), u2 at t=22 (x once),
    # u4 at t=25 (x at 20 and 23, y at 22 and 24)
    by_user = {
        data.users.external[int(u)]: split.cold_counts[r].tolist() for r, u in enumerate(split.cold.users)
    }
    assert by_user == {"u1": [0.0, 0.0], "u2": [1.0, 0.0], "u4": [2.0, 2.0]}
    assert split.cold_meta.height == 2


def test_random_cold_set_is_seeded_and_sized() -> None:
    data = _log()
    a = cold_item_split(data, 0.3, by="random", seed=1, min_history=1)
    b = cold_item_split(data, 0.3, by="random", seed=1, min_history=1)
    assert a.cold_items == b.cold_items and a.n_cold == 2 and a.n_warm == 5
    assert np.all(a.cold.targets.items >= a.n_warm) and np.all(a.cold.history.items < a.n_warm)


@pytest.mark.parametrize(("fraction", "by"), [(0.0, "time"), (1.0, "random"), (0.3, "age")])
def test_bad_arguments_are_refused(fraction: float, by: str) -> None:
    with pytest.raises(ValueError):
        cold_item_split(_log(), fraction, by=by)
