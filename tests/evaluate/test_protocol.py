"""`evaluate` end to end against brute force, and model selection that never peeks at test."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playnext.data.interactions import Histories
from playnext.data.split import EvalSet
from playnext.evaluate.protocol import evaluate

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- brute-force reference (independent of playnext.evaluate) -----------------------------------


def metrics_from_ranks(ranks: Sequence[int | None], n_targets: int, ks: Sequence[int]) -> dict[str, float]:
    found = [r for r in ranks if r is not None]
    out = {"MRR": 1.0 / min(found) if found else 0.0}
    for k in ks:
        hits = [r for r in found if r <= k]
        idcg = sum(1.0 / math.log2(i + 1) for i in range(1, min(n_targets, k) + 1))
        out[f"HR@{k}"] = 1.0 if hits else 0.0
        out[f"NDCG@{k}"] = sum(1.0 / math.log2(r + 1) for r in hits) / idcg
        out[f"Recall@{k}"] = len(hits) / n_targets
    return out


def brute_user(scores, exclude, targets, ks, ties) -> dict[str, float]:
    cand = [i for i in range(len(scores)) if i not in set(exclude)]
    if ties != "expected":
        after = ties == "pessimistic"
        ranks: list[int | None] = []
        for t in targets:
            if t not in cand:
                ranks.append(None)
                continue
            order = sorted(cand, key=lambda i, t=t: (-scores[i], (i == t) == after))
            ranks.append(order.index(t) + 1)
        return metrics_from_ranks(ranks, len(targets), ks)
    # expected: average over every ordering of tied candidates
    levels = sorted({scores[i] for i in cand}, reverse=True)
    groups = [[i for i in cand if scores[i] == v] for v in levels]
    orders = [
        [i for g in combo for i in g]
        for combo in itertools.product(*(itertools.permutations(g) for g in groups))
    ]
    acc: dict[str, float] = {}
    for order in orders:
        m = metrics_from_ranks(
            [order.index(t) + 1 if t in order else None for t in targets], len(targets), ks
        )
        for key, v in m.items():
            acc[key] = acc.get(key, 0.0) + v / len(orders)
    return acc


def brute_evaluate(scores, exclude, targets, ks, ties, item_counts=None) -> dict[str, float]:
    rows = [r for r in range(len(scores)) if targets[r]]
    n_items = len(scores[0])
    sums: dict[str, float] = {}
    for r in rows:
        for key, v in brute_user(scores[r], exclude[r], targets[r], ks, ties).items():
            sums[key] = sums.get(key, 0.0) + v
    out = {key: v / len(rows) for key, v in sums.items()}
    k0 = min(ks)
    tops = {
        r: sorted(
            [i for i in range(n_items) if i not in set(exclude[r])], key=lambda i, s=scores[r]: (-s[i], i)
        )[:k0]
        for r in rows
    }
    out[f"Coverage@{k0}"] = len(set().union(*tops.values())) / n_items
    if item_counts is not None:
        total = sum(item_counts)
        info = [-math.log2(max(c, 1) / total) for c in item_counts]
        out[f"Novelty@{k0}"] = sum(sum(info[i] for i in tops[r]) / k0 for r in rows) / len(rows)
        out[f"ARP@{k0}"] = sum(sum(item_counts[i] for i in tops[r]) / k0 for r in rows) / len(rows)
    return out


# ---- generated evaluation sets ------------------------------------------------------------------


def f32(x: float) -> float:
    return float(np.float32(x))


@st.composite
def eval_sets(draw, max_items: int = 6, max_users: int = 7, min_candidates: int = 0):
    n = draw(st.integers(max(1, min_candidates + 1), max_items))
    n_users = draw(st.integers(1, max_users))
    int_scores = draw(st.booleans())
    value = st.integers(0, 2).map(float) if int_scores else st.floats(-5, 5, width=32).map(f32)
    # scores are a function of the user id, so batching cannot change what a user is scored
    scores = [[draw(value) for _ in range(n)] for _ in range(n_users)]
    item = st.integers(0, n - 1)
    exclude = [draw(st.lists(item, max_size=n - min_candidates, unique=True)) for _ in range(n_users)]
    targets = [
        draw(st.lists(item, min_size=1 if u == 0 else 0, max_size=min(3, n), unique=True))
        for u in range(n_users)
    ]
    return scores, exclude, targets


def build(scores, exclude, targets, user_ids=None):
    users = np.arange(len(scores)) if user_ids is None else np.asarray(user_ids)
    hist = Histories.from_lists(exclude)
    data = EvalSet(users, hist, Histories.from_lists(targets), hist)
    table = torch.tensor(scores, dtype=torch.float32)
    by_user = {int(u): r for r, u in enumerate(users)}

    def scorer(batch_users: np.ndarray, history: Histories) -> torch.Tensor:
        # the scorer sees each user's own history: check the batch was cut consistently
        for u, h in zip(batch_users, (history[i] for i in range(len(history))), strict=True):
            assert h.tolist() == list(exclude[by_user[int(u)]])
        return table[[by_user[int(u)] for u in batch_users]].clone()

    return data, scorer


def assert_metrics(got: dict[str, float], ref: dict[str, float]) -> None:
    assert set(got) == set(ref)
    for key, v in ref.items():
        assert got[key] == pytest.approx(v, rel=1e-9, abs=1e-12), key


# ---- evaluate == brute force, independent of batching ------------------------------------------


@SETTINGS
@given(eval_sets(), st.sampled_from(["expected", "pessimistic", "optimistic"]))
def test_evaluate_equals_brute_force(case, ties):
    scores, exclude, targets = case
    data, scorer = build(scores, exclude, targets)
    ks = (1, 2, 5)
    res = evaluate(scorer, data, len(scores[0]), ks=ks, ties=ties)
    assert_metrics(res.metrics, brute_evaluate(scores, exclude, targets, ks, ties))
    assert res.n_users == sum(1 for t in targets if t)


@SETTINGS
@given(eval_sets(max_items=8, min_candidates=2))
def test_evaluate_novelty_and_arp_equal_brute_force(case):
    scores, exclude, targets = case
    n = len(scores[0])
    counts = np.arange(n, dtype=np.int64) % 4  # zeros included: clipped to 1 for self-information
    data, scorer = build(scores, exclude, targets)
    res = evaluate(scorer, data, n, ks=(2, 3), ties="pessimistic", item_counts=counts)
    assert_metrics(
        res.metrics, brute_evaluate(scores, exclude, targets, (2, 3), "pessimistic", counts.tolist())
    )


@SETTINGS
@given(eval_sets(max_items=6))
def test_evaluate_without_exclusion_ranks_seen_items_too(case):
    scores, exclude, targets = case
    data, scorer = build(scores, exclude, targets)
    res = evaluate(scorer, data, len(scores[0]), ks=(1, 3), exclude_seen=False)
    nothing = [[] for _ in scores]
    assert_metrics(res.metrics, brute_evaluate(scores, nothing, targets, (1, 3), "expected"))


@SETTINGS
@given(eval_sets(max_items=30, max_users=12), st.sampled_from(["expected", "pessimistic"]))
def test_batching_does_not_change_metrics(case, ties):
    scores, exclude, targets = case
    n = len(scores[0])
    data, scorer = build(scores, exclude, targets, user_ids=np.arange(len(scores))[::-1] * 3 + 5)
    runs = [
        evaluate(
            scorer, data, n, ks=(1, 10), ties=ties, batch_size=b, keep_per_user=True, item_counts=np.ones(n)
        )
        for b in (1, 3, None)
    ]
    for other in runs[1:]:
        assert set(other.metrics) == set(runs[0].metrics)
        for key, v in runs[0].metrics.items():
            assert other.metrics[key] == pytest.approx(v, rel=1e-12, abs=1e-15), key
        for key, v in runs[0].per_user.items():
            np.testing.assert_array_equal(other.per_user[key], v)
        assert other.n_users == runs[0].n_users
    # the sampled protocol draws negatives per user in order: also batching-invariant
    sampled = [
        evaluate(scorer, data, n, ks=(5,), sampled_negatives=3, batch_size=b, seed=7) for b in (1, 3, None)
    ]
    for other in sampled[1:]:
        assert other.metrics == pytest.approx(sampled[0].metrics, rel=1e-12)


def test_progress_reports_every_evaluated_user():
    scores = [[float(i) for i in range(5)] for _ in range(7)]
    targets = [[0], [], [1], [2], [], [3], [4]]
    data, scorer = build(scores, [[] for _ in scores], targets)
    seen: list[int] = []
    res = evaluate(scorer, data, 5, ks=(1,), batch_size=2, progress=seen.append)
    assert sum(seen) == res.n_users == 5
    assert max(seen) <= 2


def test_scorer_with_wrong_shape_is_rejected():
    data, _ = build([[0.0, 1.0]], [[]], [[1]])
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda u, h: torch.zeros(len(u), 3), data, 2, ks=(1,))


def test_perfect_and_reversed_scorers():
    n = 20
    targets = [[i] for i in range(n)]
    hist = [[] for _ in range(n)]
    perfect = [[1.0 if i == t[0] else 0.0 for i in range(n)] for t in targets]
    reverse = [[0.0 if i == t[0] else float(i + 1) for i in range(n)] for t in targets]
    d, s = build(perfect, hist, targets)
    res = evaluate(s, d, n, ks=(1, 10))
    assert res.metrics["HR@1"] == res.metrics["NDCG@10"] == res.metrics["MRR"] == 1.0
    assert res.metrics["Coverage@1"] == 1.0
    d, s = build(reverse, hist, targets)
    res = evaluate(s, d, n, ks=(1, 10))
    assert res.metrics["HR@10"] == 0.0
    assert res.metrics["MRR"] == pytest.approx(1 / n)


# ---- the repeat-aware protocol: nothing masked, repeat and new targets apart ---------------------

ACCURACY = ("HR@", "NDCG@", "Recall@", "MRR")


@SETTINGS
@given(eval_sets(max_items=6), st.sampled_from(["expected", "pessimistic"]))
def test_repeats_split_the_metrics_by_target_group_as_brute_force_does(case, ties):
    """A user whose targets are all in their history is a repeat, none of them new, both: in
    neither group; each group's metrics are brute force over its users with nothing masked."""
    scores, history, targets = case
    data, scorer = build(scores, history, targets)
    ks = (1, 3)
    res = evaluate(scorer, data, len(scores[0]), ks=ks, ties=ties, repeats=True)
    nothing = [[] for _ in scores]
    overall = brute_evaluate(scores, nothing, targets, ks, ties)
    assert all(res.metrics[k] == pytest.approx(v, rel=1e-9, abs=1e-12) for k, v in overall.items())
    for group in ("repeat", "new"):
        rows = [
            r
            for r, t in enumerate(targets)
            if t and (set(t) <= set(history[r]) if group == "repeat" else not set(t) & set(history[r]))
        ]
        assert res.groups[group] == len(rows)
        got = {k[len(group) + 1 :]: v for k, v in res.metrics.items() if k.startswith(f"{group}/")}
        if not rows:
            assert got == {}  # a group with no user has no numbers, not zeros
            continue
        ref = brute_evaluate([scores[r] for r in rows], nothing, [targets[r] for r in rows], ks, ties)
        assert_metrics(got, {k: v for k, v in ref.items() if k.startswith(ACCURACY)})


def test_repeats_keep_the_default_protocol_unchanged():
    """Without `repeats` nothing new appears; with it, a seen target is a candidate again."""
    scores = [[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]]
    history, targets = [[0, 1], [2]], [[0], [1]]  # user 0 goes back to item 0; user 1's target is new
    data, scorer = build(scores, history, targets)
    plain = evaluate(scorer, data, 4, ks=(1, 2))
    assert plain.groups == {} and not any("/" in k for k in plain.metrics)
    assert plain.metrics["HR@2"] == 0.5  # user 0's seen target is masked: a miss
    rep = evaluate(scorer, data, 4, ks=(1, 2), repeats=True)
    assert rep.groups == {"repeat": 1, "new": 1}
    assert rep.metrics["repeat/HR@1"] == rep.metrics["repeat/MRR"] == 1.0
    assert rep.metrics["new/HR@2"] == 0.0 and rep.metrics["new/MRR"] == pytest.approx(1 / 3)
    assert rep.metrics["HR@1"] == 0.5
