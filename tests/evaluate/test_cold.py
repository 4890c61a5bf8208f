"""Cold-start metrics and baselines against explicit ranks."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import torch

from playnext.data.interactions import Histories, Interactions
from playnext.data.split import cold_item_split
from playnext.evaluate.cold import (
    borrowing,
    choose_live_weight,
    cold_popularity,
    evaluate_cold,
    id_only,
    with_live_counts,
)


def _split():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    rows = [
        (f"u{u}", f"i{int(i)}", t) for u in range(40) for t, i in enumerate(rng.choice(30, 8, replace=False))
    ]
    data = Interactions.from_frame(pl.DataFrame(rows, schema=["user", "item", "timestamp"], orient="row"))
    return cold_item_split(data, 0.2, by="random", seed=3, min_history=2)


def _brute_hr_ndcg(
    scores: np.ndarray, target: int, seen: set[int], cols: range, k: int
) -> tuple[float, float]:
    """HR@k and NDCG@k of `target` ranked among `cols` minus `seen`; the fixtures draw distinct
    random scores, so there are no ties to average over."""
    better = sum(1 for c in cols if c not in seen and c != target and scores[c] > scores[target])
    rank = better + 1
    return float(rank <= k), (1.0 / math.log2(rank + 1) if rank <= k else 0.0)


def test_all_and_within_cold_match_explicit_ranks() -> None:
    split = _split()
    n = split.n_warm + split.n_cold
    table = torch.from_numpy(np.random.default_rng(1).random((len(split.cold), n)))
    row_of = {int(u): r for r, u in enumerate(split.cold.users)}

    def scorer(users: np.ndarray, history: Histories) -> torch.Tensor:
        return table[[row_of[int(u)] for u in users]]

    got = evaluate_cold(scorer, split, ks=(5,))
    hr_all, nd_all, hr_cold, nd_cold = [], [], [], []
    for r in range(len(split.cold)):
        s, t, seen = table[r].numpy(), int(split.cold.targets[r][0]), set(split.cold.history[r].tolist())
        h, nd = _brute_hr_ndcg(s, t, seen, range(n), 5)
        hr_all.append(h), nd_all.append(nd)
        h, nd = _brute_hr_ndcg(s, t, set(), range(split.n_warm, n), 5)
        hr_cold.append(h), nd_cold.append(nd)
    assert got["all/HR@5"] == np.mean(hr_all) and abs(got["all/NDCG@5"] - np.mean(nd_all)) < 1e-6
    assert got["cold/HR@5"] == np.mean(hr_cold) and abs(got["cold/NDCG@5"] - np.mean(nd_cold)) < 1e-6
    assert got["questions"] == len(split.cold)


def test_id_only_ranks_cold_items_by_chance_and_never_above_a_warm_one() -> None:
    split = _split()
    warm = lambda u, h: torch.from_numpy(np.random.default_rng(2).random((len(u), split.n_warm)))  # noqa: E731
    got = evaluate_cold(id_only(warm, split.n_cold), split, ks=(3,))
    assert got["all/HR@3"] == 0.0
    assert abs(got["cold/HR@3"] - 3 / split.n_cold) < 1e-9  # every cold item tied: expected rank


def test_borrowing_is_the_weighted_mean_of_the_neighbours_scores() -> None:
    split = _split()
    warm_scores = torch.arange(split.n_warm, dtype=torch.float32)[None].repeat(2, 1)
    nb = np.stack([np.arange(3) + j for j in range(split.n_cold)])  # (C, 3)
    w = np.full((split.n_cold, 3), 1 / 3, dtype=np.float32)
    s = borrowing(lambda u, h: warm_scores, nb, w)(
        np.zeros(2, dtype=np.int64), split.cold.history.take(np.arange(2))
    )
    assert s.shape == (2, split.n_warm + split.n_cold)
    assert torch.allclose(s[0, split.n_warm :], torch.tensor([j + 1.0 for j in range(split.n_cold)]))


def test_cold_popularity_orders_by_events_seen_before_each_question() -> None:
    split = _split()
    s = cold_popularity(split)(split.cold.users, split.cold.history)
    assert torch.equal(s[:, split.n_warm :], torch.from_numpy(split.cold_counts))
    assert torch.isinf(s[:, : split.n_warm]).all()
    got = evaluate_cold(cold_popularity(split), split, ks=(3,), within_only=True)
    assert "all/HR@3" not in got and 0.0 <= got["cold/HR@3"] <= 1.0


def test_halves_split_the_questions_by_user_and_keep_their_counts() -> None:
    split = _split()
    valid, test = split.halves(seed=4)
    assert len(valid.cold) + len(test.cold) == len(split.cold) and abs(len(valid.cold) - len(test.cold)) <= 1
    assert not set(valid.cold.users.tolist()) & set(test.cold.users.tolist())
    row_of = {int(u): r for r, u in enumerate(split.cold.users)}
    for half in (valid, test):
        for r, u in enumerate(half.cold.users):  # each question keeps its own target and live counts
            assert int(half.cold.targets[r][0]) == int(split.cold.targets[row_of[int(u)]][0])
            assert np.array_equal(half.cold_counts[r], split.cold_counts[row_of[int(u)]])
    assert np.array_equal(split.halves(seed=4)[0].cold.users, valid.cold.users)  # seeded


def test_live_counts_add_log1p_counts_to_cold_items_only() -> None:
    split = _split()
    base = torch.from_numpy(np.random.default_rng(5).random((len(split.cold), split.n_warm + split.n_cold)))
    row_of = {int(u): r for r, u in enumerate(split.cold.users)}
    scorer = lambda u, h: base[[row_of[int(x)] for x in u]]  # noqa: E731
    s = with_live_counts(scorer, split, 0.5)(split.cold.users, split.cold.history)
    assert torch.equal(s[:, : split.n_warm], base[:, : split.n_warm])
    want = base[:, split.n_warm :] + 0.5 * torch.log1p(torch.from_numpy(split.cold_counts))
    assert torch.allclose(s[:, split.n_warm :], want.to(s.dtype))


def test_the_live_weight_is_chosen_by_the_validation_metric() -> None:
    """Scores that know nothing (all zero): more weight on counts can only help up to the point
    counts alone rank; weight 0 (chance) must lose to any positive weight whenever counts help."""
    split = _split()
    valid, _ = split.halves()
    zero = lambda u, h: torch.zeros(len(u), split.n_warm + split.n_cold)  # noqa: E731
    best, seen = choose_live_weight(zero, valid, weights=(0.0, 1.0, 2.0))
    pop = evaluate_cold(cold_popularity(valid), valid, within_only=True)["cold/NDCG@10"]
    assert abs(seen[1.0] - pop) < 1e-9 and abs(seen[2.0] - pop) < 1e-9  # same order as counts alone
    want = 1.0 if pop > seen[0.0] else 0.0  # ties go to the smaller weight
    assert best == want
