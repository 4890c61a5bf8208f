"""Full-ranking evaluation from scores made on the fly, batch by batch (benchmarks/large_eval.py, small).

The scorer multiplies low-rank factors for just the users it is asked about, so the users × items
matrix never exists. The numbers must equal a brute-force ranking of the whole dense matrix, and
must not depend on the batch size.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from playnext.data.interactions import Histories
from playnext.data.split import EvalSet
from playnext.evaluate.protocol import Scorer, evaluate

N_USERS, N_ITEMS, DIM = 3000, 4000, 8


@pytest.fixture(scope="module")
def world() -> World:
    rng = np.random.default_rng(7)
    users = rng.standard_normal((N_USERS, DIM), dtype=np.float32)
    items = rng.standard_normal((N_ITEMS, DIM), dtype=np.float32)
    pool = rng.integers(0, N_ITEMS, (N_USERS, 20))  # target: the best of 20 random items
    targets = pool[np.arange(N_USERS), np.einsum("ud,ukd->uk", users, items[pool]).argmax(1)]
    lengths = rng.poisson(20, N_USERS)
    pairs = zip(lengths, targets, strict=True)
    excluded = Histories.from_lists(
        [np.setdiff1d(rng.choice(N_ITEMS, n, replace=False), [t]) for n, t in pairs]
    )
    data = EvalSet(np.arange(N_USERS), excluded, Histories(np.arange(N_USERS + 1), targets), excluded)
    return users, items, data


World = tuple[np.ndarray, np.ndarray, EvalSet]


def factor_scorer(users: np.ndarray, items: np.ndarray, seen: list[int]) -> Scorer:
    u, v = torch.from_numpy(users), torch.from_numpy(items)

    def scorer(batch: np.ndarray, _history: Histories) -> torch.Tensor:
        seen.append(len(batch))
        return u[torch.from_numpy(batch)] @ v.T  # (B, N)

    return scorer


def test_batched_on_the_fly_scores_equal_a_dense_brute_force_ranking(world: World) -> None:
    users, items, data = world
    seen: list[int] = []
    res = evaluate(
        factor_scorer(users, items, seen), data, N_ITEMS, ks=(10,), ties="pessimistic", batch_size=256
    )
    assert max(seen) <= 256 and sum(seen) == N_USERS  # never more than one batch of scores at a time

    dense = (torch.from_numpy(users) @ torch.from_numpy(items).T).numpy()  # the reference only
    for u in range(N_USERS):
        dense[u, data.exclude[u]] = -np.inf
    target = dense[np.arange(N_USERS), data.targets.items]
    rank = 1 + (dense >= target[:, None]).sum(1) - 1  # pessimistic: ties ahead of the target
    assert res.metrics["HR@10"] == pytest.approx(np.mean(rank <= 10))
    assert res.metrics["MRR"] == pytest.approx(np.mean(1.0 / rank))
    assert res.metrics["NDCG@10"] == pytest.approx(np.mean(np.where(rank <= 10, 1 / np.log2(rank + 1), 0.0)))
    assert 0.01 < res.metrics["HR@10"] < 0.9  # planted targets: far above chance (10/4000)


def test_metrics_do_not_depend_on_the_batch_size(world: World) -> None:
    users, items, data = world
    runs = [
        evaluate(factor_scorer(users, items, []), data, N_ITEMS, batch_size=b).metrics for b in (97, 4096)
    ]
    for other in runs[1:]:
        assert other.keys() == runs[0].keys()
        for k, v in runs[0].items():
            assert other[k] == pytest.approx(v, rel=1e-12), k
