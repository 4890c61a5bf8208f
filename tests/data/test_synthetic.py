"""The synthetic world: deterministic, fast at scale, and carrying the structure it promises.

The last tests are the point of the dataset: co-occurrence (EASE) must clearly beat popularity,
and the planted order (next item of the series) must beat it by far, so a sequence model has
something real to learn.
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl
import pytest
import torch

from playnext.data.interactions import Columns, Histories, Interactions
from playnext.data.split import Split, leave_one_out
from playnext.data.synthetic import _SPECS, generate_world, next_in_series
from playnext.evaluate.protocol import evaluate
from playnext.experiment import select_and_test


@pytest.fixture(scope="module")
def world() -> Interactions:
    return generate_world()


@pytest.fixture(scope="module")
def split(world: Interactions) -> Split:
    return leave_one_out(world)


@pytest.fixture(scope="module")
def popular_ndcg(split: Split) -> float:
    return float(select_and_test("popular", split).test.metrics["NDCG@10"])


def test_same_seed_same_world_other_seed_other_world() -> None:
    a, b, c = (generate_world(300, 400, seed=s) for s in (3, 3, 4))
    assert a.frame.equals(b.frame) and a.meta.equals(b.meta) and a.users == b.users and a.items == b.items
    assert not a.frame.equals(c.frame)


@pytest.mark.parametrize(("n_users", "n_items", "mean_length"), [(50, 200, 20.0), (2000, 1500, 40.0)])
def test_sizes_follow_the_arguments(n_users: int, n_items: int, mean_length: float) -> None:
    data = generate_world(n_users, n_items, mean_length=mean_length)
    assert data.n_users == n_users  # every user has at least one event
    assert 0.8 * n_items <= data.n_items <= n_items  # a few unpopular items are never consumed
    assert 0.85 <= len(data) / (n_users * mean_length) <= 1.15
    assert data.frame.select(Columns.USER, Columns.ITEM).n_unique() == len(data)  # no repeated pairs


def test_a_million_interactions_in_seconds() -> None:
    start = time.perf_counter()
    data = generate_world(25_000, 3000)
    seconds = time.perf_counter() - start
    assert len(data) >= 900_000
    assert seconds < 15.0, f"{seconds:.1f}s for {len(data)} interactions"


def test_popularity_is_a_power_law(world: Interactions) -> None:
    counts = np.sort(world.item_counts())[::-1]
    top_share = counts[: len(counts) // 10].sum() / counts.sum()
    assert top_share > 0.3
    assert counts[0] > 20 * np.median(counts)


def test_catalog_has_titled_genred_items_of_every_kind(world: Interactions) -> None:
    meta = world.meta
    assert meta.get_column(Columns.ITEM_ID).equals(world.items.external.rename(Columns.ITEM_ID))
    assert set(meta.get_column(Columns.KIND)) == {"movie", "music", "game"}
    assert meta.null_count().sum_horizontal().item() == 0
    # kinds, ids and genres agree: a track has music genres, its id says "music"
    kind_of_id = meta.get_column(Columns.ITEM_ID).str.extract(r"^([a-z]+)-")
    assert kind_of_id.equals(meta.get_column(Columns.KIND), check_names=False)
    for kind, genres in meta.select(Columns.KIND, Columns.GENRES).explode(Columns.GENRES).iter_rows():
        assert genres in _SPECS[kind].genres
    assert (meta.get_column(Columns.GENRES).list.len() >= 1).all()
    assert meta.get_column(Columns.YEAR).is_between(1950, 2050).all()
    titles = dict(zip(meta.get_column(Columns.ITEM_ID), meta.get_column(Columns.TITLE), strict=True))
    assert all(len(t) > 3 for t in titles.values())
    for kind, second in (("music", " (track 2)"), ("movie", " II"), ("game", " 2")):
        seconds = [t for i, t in titles.items() if i.startswith(f"{kind}-") and i.endswith("-2")]
        assert seconds and all(t.endswith(second) for t in seconds), kind
    assert world.titles([0])[0] == titles[world.items.external[0]]


def test_kinds_can_be_chosen_and_are_validated() -> None:
    games = generate_world(100, 300, kinds=("game",))
    assert set(games.meta.get_column(Columns.KIND)) == {"game"}
    with pytest.raises(ValueError):
        generate_world(100, 300, kinds=("book",))
    with pytest.raises(ValueError):
        generate_world(100, 300, kinds=())


def test_timestamps_never_go_back_within_a_user(world: Interactions) -> None:
    user = world.user_idx
    ts = world.frame.get_column(Columns.TIMESTAMP).to_numpy()
    same_user = user[1:] == user[:-1]
    assert (np.diff(ts)[same_user] >= 0).all()
    assert (np.diff(ts)[same_user] == 0).any()  # same-second ties exist, ordered by file position
    assert world.frame.get_column(Columns.TIMESTAMP).null_count() == 0


def test_series_are_consumed_in_order(world: Interactions) -> None:
    succ = next_in_series(world)
    pred = np.full(world.n_items, -1)
    pred[succ[succ >= 0]] = np.flatnonzero(succ >= 0)
    user, item = world.user_idx, world.item_idx
    prev = np.where(np.r_[False, user[1:] == user[:-1]], np.r_[-1, item[:-1]], -1)
    has_pred = pred[item] >= 0
    assert has_pred.mean() > 0.3
    assert (prev[has_pred] == pred[item[has_pred]]).all()  # item k+1 always right after item k
    has_succ = (succ[item[:-1]] >= 0) & (user[1:] == user[:-1])
    assert (item[1:][has_succ] == succ[item[:-1][has_succ]]).mean() > 0.6  # and usually follows it


def test_repeats_only_when_asked_and_only_for_music() -> None:
    data = generate_world(300, 300, mean_length=40, allow_repeats=True)
    pairs = data.frame.group_by(Columns.USER, Columns.ITEM).len().filter(pl.col("len") > 1)
    assert pairs.height > 0
    kinds = data.meta.get_column(Columns.KIND).to_numpy()[pairs.get_column(Columns.ITEM).to_numpy()]
    assert set(kinds) == {"music"}


def test_relistens_are_planted_only_when_asked() -> None:
    """Off, the world is bit-identical to one built before the option; on, a re-listen replays
    a track of the user's own music history, and about that share of test targets are repeats."""
    plain = generate_world(300, 300, seed=5)
    assert plain.frame.equals(generate_world(300, 300, seed=5, relisten_rate=0.0).frame)
    data = generate_world(400, 300, seed=5, relisten_rate=0.3)
    assert len(data) > len(plain)
    pairs = data.frame.group_by(Columns.USER, Columns.ITEM).len().filter(pl.col("len") > 1)
    kinds = data.meta.get_column(Columns.KIND).to_numpy()[pairs.get_column(Columns.ITEM).to_numpy()]
    assert pairs.height > 0 and set(kinds) == {"music"}
    test = leave_one_out(data).test
    repeat = np.mean([test.targets[r][0] in set(test.history[r].tolist()) for r in range(len(test))])
    music = np.mean(data.meta.get_column(Columns.KIND).to_numpy()[test.targets.items] == "music")
    assert 0.3 * music * 0.6 < repeat < 0.3 * music * 1.6 + 0.05  # a re-listen after a last play
    with pytest.raises(ValueError, match="relisten_rate"):
        generate_world(50, 60, relisten_rate=1.5)
    with pytest.raises(ValueError, match="typed_events"):
        generate_world(50, 60, relisten_rate=0.1, typed_events=True)


def test_ease_clearly_beats_popularity(split: Split, popular_ndcg: float) -> None:
    ease = select_and_test("ease", split, grid=[{"l2": 100.0}, {"l2": 500.0}]).test.metrics["NDCG@10"]
    assert ease >= 2 * popular_ndcg, (ease, popular_ndcg)


def test_next_in_series_oracle_beats_popularity_by_far(
    world: Interactions, split: Split, popular_ndcg: float
) -> None:
    """Recommending the next item of the last item's series (popularity otherwise)."""
    succ = torch.from_numpy(next_in_series(world))
    counts = torch.from_numpy(split.train.item_counts().astype(np.float32))
    prior = counts / (counts.max() + 1)  # < 1: only breaks ties below the oracle's pick

    def oracle(users: np.ndarray, history: Histories) -> torch.Tensor:
        scores = prior.expand(len(users), -1).clone()  # (B, I)
        rows = np.flatnonzero(history.lengths > 0)
        nxt = succ[torch.from_numpy(history.items[history.indptr[rows + 1] - 1])]
        hit = nxt >= 0
        scores[torch.from_numpy(rows)[hit], nxt[hit]] += 1.0
        return scores

    ndcg = evaluate(oracle, split.test, split.train.n_items).metrics["NDCG@10"]
    assert ndcg >= 5 * popular_ndcg, (ndcg, popular_ndcg)
