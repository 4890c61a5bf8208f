"""Metrics checked against a brute-force, pure-Python reference.

The reference ranks candidates with Python's `sorted`, computes every metric from explicit
ranks, and obtains the `expected` ties policy by enumerating *every* ordering of tied items
(tiny catalogs) — nothing is shared with the vectorised implementation under test.
"""

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
from playnext.evaluate.metrics import mask_excluded, rank_targets, topk_items, user_metrics
from playnext.evaluate.protocol import evaluate

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NEG_INF = float("-inf")


# ---- brute-force reference -------------------------------------------------------------------


def metrics_from_ranks(ranks: Sequence[float | None], n_targets: int, ks: Sequence[int]) -> dict[str, float]:
    """HR/NDCG/Recall/MRR from explicit 1-based target ranks (None = miss)."""
    found = [r for r in ranks if r is not None]
    out = {"MRR": 1.0 / min(found) if found else 0.0}
    for k in ks:
        hits = [r for r in found if r <= k]
        idcg = sum(1.0 / math.log2(i + 1) for i in range(1, min(n_targets, k) + 1))
        out[f"HR@{k}"] = 1.0 if hits else 0.0
        out[f"NDCG@{k}"] = sum(1.0 / math.log2(r + 1) for r in hits) / idcg if idcg else 0.0
        out[f"Recall@{k}"] = len(hits) / n_targets
    return out


def candidates(scores: Sequence[float], exclude: Sequence[int]) -> list[int]:
    ex = set(exclude)
    return [i for i in range(len(scores)) if i not in ex]


def brute_rank(scores: Sequence[float], exclude: Sequence[int], target: int, place: str) -> int | None:
    """1-based position of `target` in the candidate list sorted by score, the target placed
    after ("pessimistic") or before ("optimistic") every item with the same score."""
    cand = candidates(scores, exclude)
    if target not in cand:
        return None
    after = place == "pessimistic"
    key = {i: (-scores[i], (i == target) == after) for i in cand}
    order = sorted(cand, key=lambda i: key[i])
    return order.index(target) + 1


def brute_deterministic(
    scores: Sequence[float], exclude: Sequence[int], targets: Sequence[int], ks: Sequence[int], ties: str
) -> dict[str, float]:
    ranks = [brute_rank(scores, exclude, t, ties) for t in targets]
    return metrics_from_ranks(ranks, len(targets), ks)


def all_tie_orders(scores: Sequence[float], cand: Sequence[int]) -> list[list[int]]:
    """Every ranking of `cand` consistent with the scores (all permutations inside tie groups)."""
    levels = sorted({scores[i] for i in cand}, reverse=True)
    groups = [[i for i in cand if scores[i] == v] for v in levels]
    return [
        [i for part in combo for i in part]
        for combo in itertools.product(*(itertools.permutations(g) for g in groups))
    ]


def brute_expected(
    scores: Sequence[float], exclude: Sequence[int], targets: Sequence[int], ks: Sequence[int]
) -> dict[str, float]:
    """Exact average of every metric over all orderings of tied candidates."""
    cand = candidates(scores, exclude)
    orders = all_tie_orders(scores, cand)
    total: dict[str, float] = {}
    for order in orders:
        pos = {item: p + 1 for p, item in enumerate(order)}
        m = metrics_from_ranks([pos.get(t) for t in targets], len(targets), ks)
        for key, v in m.items():
            total[key] = total.get(key, 0.0) + v
    if not orders:  # nothing to rank: every target is a miss
        return metrics_from_ranks([None] * len(targets), len(targets), ks)
    return {key: v / len(orders) for key, v in total.items()}


def brute(scores, exclude, targets, ks, ties):
    if ties == "expected":
        return brute_expected(scores, exclude, targets, ks)
    return brute_deterministic(scores, exclude, targets, ks, ties)


def brute_topk(scores: Sequence[float], k: int) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


# ---- the implementation, driven like `evaluate` drives it ------------------------------------


def run_library(scores, exclude, targets, ks, ties, chunk: int = 1 << 24):
    s = torch.tensor(scores, dtype=torch.float32)
    mask_excluded(s, Histories.from_lists(exclude))
    tg = Histories.from_lists(targets)
    ranks = rank_targets(s, tg, chunk=chunk)
    return ranks, user_metrics(ranks, len(targets), tg.lengths, ks, ties, s.shape[1])


def assert_rows_match(lib: dict[str, np.ndarray], ref_rows: list[dict[str, float]]) -> None:
    for r, ref in enumerate(ref_rows):
        for key, v in ref.items():
            assert lib[key][r] == pytest.approx(v, rel=1e-9, abs=1e-12), (key, r, lib[key][r], v)
    assert set(lib) == set(ref_rows[0])


# ---- strategies -------------------------------------------------------------------------------


def f32(x: float) -> float:
    return float(np.float32(x))


@st.composite
def cases(draw, max_items: int = 6, max_rows: int = 3, max_targets: int = 3, ties_likely: bool | None = None):
    """Score rows (float32-exact Python floats), exclusion lists, 1..3 distinct targets per row, ks."""
    n = draw(st.integers(1, max_items))
    rows = draw(st.integers(1, max_rows))
    int_scores = draw(st.booleans()) if ties_likely is None else ties_likely
    value = (
        st.integers(0, 2).map(float)
        if int_scores
        else st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=32).map(f32)
    )
    scores = [[draw(value) for _ in range(n)] for _ in range(rows)]
    item = st.integers(0, n - 1)
    exclude = [sorted(draw(st.sets(item, max_size=n))) for _ in range(rows)]
    targets = [
        draw(st.lists(item, min_size=1, max_size=min(max_targets, n), unique=True)) for _ in range(rows)
    ]
    ks = sorted(draw(st.sets(st.integers(1, n + 2), min_size=1, max_size=3)))
    return scores, exclude, targets, ks


# ---- mask_excluded ------------------------------------------------------------------------------


@SETTINGS
@given(cases(max_items=8))
def test_mask_excluded_sets_exactly_the_excluded_cells(case):
    scores, exclude, _, _ = case
    s = torch.tensor(scores, dtype=torch.float32)
    out = mask_excluded(s, Histories.from_lists(exclude))
    assert out is s  # in place
    for r, row in enumerate(scores):
        for i, v in enumerate(row):
            assert out[r, i].item() == (NEG_INF if i in exclude[r] else v)


def test_mask_excluded_with_nothing_to_exclude_is_identity():
    s = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    out = mask_excluded(s.clone(), Histories.from_lists([[], []]))
    assert torch.equal(out, s)


# ---- (a) ranks --------------------------------------------------------------------------------


@SETTINGS
@given(cases(max_items=12, max_targets=4), st.sampled_from([1, 5, 1 << 24]))
def test_rank_targets_match_sorted_positions(case, chunk):
    scores, exclude, targets, _ = case
    ranks, _ = run_library(scores, exclude, targets, [1], "expected", chunk=chunk)
    m = 0
    for r, tg in enumerate(targets):
        for t in tg:
            assert ranks.row[m] == r
            pess = brute_rank(scores[r], exclude[r], t, "pessimistic")
            opt = brute_rank(scores[r], exclude[r], t, "optimistic")
            assert (pess is None) == (opt is None) == bool(ranks.miss[m]) == (t in exclude[r])
            if pess is not None:
                assert ranks.greater[m] + 1 == opt
                assert ranks.greater[m] + ranks.ties[m] + 1 == pess
            m += 1
    assert m == len(ranks.row)


# ---- (a)+(b)+(d) user metrics under every ties policy --------------------------------------------


@SETTINGS
@given(cases(), st.sampled_from(["expected", "pessimistic", "optimistic"]))
def test_user_metrics_equal_brute_force_with_ties(case, ties):
    scores, exclude, targets, ks = case
    _, lib = run_library(scores, exclude, targets, ks, ties)
    ref = [brute(scores[r], exclude[r], targets[r], ks, ties) for r in range(len(targets))]
    assert_rows_match(lib, ref)


@SETTINGS
@given(cases(ties_likely=True, max_targets=3))
def test_expected_sits_between_pessimistic_and_optimistic(case):
    scores, exclude, targets, ks = case
    _, exp = run_library(scores, exclude, targets, ks, "expected")
    _, pes = run_library(scores, exclude, targets, ks, "pessimistic")
    _, opt = run_library(scores, exclude, targets, ks, "optimistic")
    for key in exp:
        assert np.all(pes[key] <= exp[key] + 1e-12) and np.all(exp[key] <= opt[key] + 1e-12), key


def test_expected_multi_target_tie_is_exact_not_max_of_expectations():
    # two targets among four equally scored items: P(one of them is first) = 1/2, not 1/4
    _, m = run_library([[0.0, 0.0, 0.0, 0.0]], [[]], [[0, 1]], [1, 2], "expected")
    assert m["HR@1"][0] == pytest.approx(0.5)
    assert m["HR@2"][0] == pytest.approx(1 - 1 / 6)
    assert m["MRR"][0] == pytest.approx(1 / 2 + 1 / 3 / 2 + 1 / 6 / 3)
    assert m["Recall@1"][0] == pytest.approx(0.25)
    assert m["NDCG@1"][0] == pytest.approx(0.5)


@SETTINGS
@given(
    st.integers(1, 40),
    st.integers(0, 3),
    st.data(),
)
def test_expected_single_target_is_the_average_over_its_tie_positions(n, levels, data):
    # larger catalogs than full enumeration allows: average over every slot of the target's group
    scores = [float(data.draw(st.integers(0, levels))) for _ in range(n)]
    exclude = sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=n // 2)))
    target = data.draw(st.integers(0, n - 1))
    ks = [1, 3, 10, 50]
    _, lib = run_library([scores], [exclude], [[target]], ks, "expected")
    best = brute_rank(scores, exclude, target, "optimistic")
    worst = brute_rank(scores, exclude, target, "pessimistic")
    if best is None:
        ref = metrics_from_ranks([None], 1, ks)
    else:
        per = [metrics_from_ranks([r], 1, ks) for r in range(best, worst + 1)]
        ref = {key: sum(p[key] for p in per) / len(per) for key in per[0]}
    assert_rows_match(lib, [ref])


# ---- (c) several targets, no ties ------------------------------------------------------------


@SETTINGS
@given(st.integers(1, 30), st.data())
def test_multi_target_metrics_without_ties(n, data):
    rows = data.draw(st.integers(1, 3))
    scores = [list(map(float, data.draw(st.permutations(range(n))))) for _ in range(rows)]
    item = st.integers(0, n - 1)
    exclude = [sorted(data.draw(st.sets(item, max_size=n))) for _ in range(rows)]
    targets = [data.draw(st.lists(item, min_size=1, max_size=min(8, n), unique=True)) for _ in range(rows)]
    ks = sorted(data.draw(st.sets(st.integers(1, n + 2), min_size=1, max_size=3)))
    ref = []
    for r in range(rows):
        order = sorted(candidates(scores[r], exclude[r]), key=lambda i, s=scores[r]: -s[i])
        ranks = [order.index(t) + 1 if t in order else None for t in targets[r]]
        ref.append(metrics_from_ranks(ranks, len(targets[r]), ks))
    for ties in ("expected", "pessimistic", "optimistic"):  # no ties: all three agree
        _, lib = run_library(scores, exclude, targets, ks, ties)
        assert_rows_match(lib, ref)


def test_ndcg_idcg_uses_min_targets_k():
    # 3 targets at ranks 1, 2, 4 of 5; K=2 → IDCG = 1 + 1/log2(3); both top-2 slots are hits
    scores = [[5.0, 4.0, 3.0, 2.0, 1.0]]
    _, m = run_library(scores, [[]], [[0, 1, 3]], [2, 4], "expected")
    assert m["NDCG@2"][0] == pytest.approx(1.0)
    assert m["Recall@2"][0] == pytest.approx(2 / 3)
    idcg4 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["NDCG@4"][0] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / idcg4)


# ---- (d) exclusion -----------------------------------------------------------------------------


@SETTINGS
@given(cases(max_items=10), st.sampled_from(["expected", "pessimistic", "optimistic"]), st.floats(-1e6, 1e6))
def test_excluded_items_never_count(case, ties, boost):
    scores, exclude, targets, ks = case
    changed = [
        [(boost if i in ex else v) for i, v in enumerate(row)]
        for row, ex in zip(scores, exclude, strict=True)
    ]
    _, a = run_library(scores, exclude, targets, ks, ties)
    _, b = run_library(changed, exclude, targets, ks, ties)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_excluded_target_is_a_miss():
    scores = [[9.0, 1.0, 0.0], [9.0, 1.0, 0.0]]
    _, m = run_library(scores, [[0], []], [[0], [0]], [1, 3], "optimistic")
    for key in m:
        assert m[key][0] == 0.0, key
        assert m[key][1] == 1.0, key
    # one of two targets excluded: recall denominator still counts it
    _, m = run_library([[9.0, 1.0, 0.0]], [[0]], [[0, 1]], [3], "expected")
    assert m["Recall@3"][0] == pytest.approx(0.5)
    assert m["HR@3"][0] == 1.0 and m["MRR"][0] == 1.0


def test_model_minus_inf_score_is_a_miss():
    s = torch.tensor([[0.0, NEG_INF, 1.0]])
    tg = Histories.from_lists([[1]])
    ranks = rank_targets(s, tg)
    assert ranks.miss.tolist() == [True]
    m = user_metrics(ranks, 1, tg.lengths, [3], "expected", 3)
    assert m["HR@3"][0] == 0.0 and m["MRR"][0] == 0.0


# ---- (e) constant scores are chance-level -------------------------------------------------------


@SETTINGS
@given(st.integers(1, 80), st.data())
def test_constant_scores_give_chance_level(n, data):
    exclude = sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=n - 1)))
    cand = [i for i in range(n) if i not in exclude]
    nc = len(cand)
    tg = data.draw(st.lists(st.sampled_from(cand), min_size=1, max_size=min(3, nc), unique=True))
    ks = [1, 5, 10, 20]
    value = data.draw(st.sampled_from([0.0, -3.5, 7.0]))
    _, exp = run_library([[value] * n], [exclude], [tg], ks, "expected")
    _, opt = run_library([[value] * n], [exclude], [tg], ks, "optimistic")
    _, pes = run_library([[value] * n], [exclude], [tg], ks, "pessimistic")
    m = len(tg)
    for k in ks:
        kk = min(k, nc)
        chance = 1 - math.comb(nc - m, kk) / math.comb(nc, kk)  # P(some target in a random top-k)
        assert exp[f"HR@{k}"][0] == pytest.approx(chance)
        assert exp[f"Recall@{k}"][0] == pytest.approx(min(k, nc) / nc)
        assert opt[f"HR@{k}"][0] == 1.0  # the optimistic-ties bug: a useless model looks perfect
        assert pes[f"HR@{k}"][0] == (1.0 if nc <= k else 0.0)
        if m == 1:
            assert exp[f"HR@{k}"][0] == pytest.approx(min(k, nc) / nc)
            dcg = sum(1 / math.log2(r + 1) for r in range(1, min(k, nc) + 1))
            assert exp[f"NDCG@{k}"][0] == pytest.approx(dcg / nc)
    if m == 1:
        assert exp["MRR"][0] == pytest.approx(sum(1 / r for r in range(1, nc + 1)) / nc)


# ---- (f) NaN ------------------------------------------------------------------------------------


def test_nan_scores_raise():
    s = torch.tensor([[0.0, float("nan"), 1.0]])
    with pytest.raises(ValueError, match="NaN"):
        rank_targets(s, Histories.from_lists([[0]]))
    h = Histories.from_lists([[]])
    data = EvalSet(np.array([0]), h, Histories.from_lists([[2]]), h)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(lambda u, hist: s.expand(len(u), -1), data, 3, ks=(1,))


def test_nan_in_an_excluded_cell_is_masked_first():
    # evaluate masks before ranking; a NaN the mask overwrites is harmless
    s = torch.tensor([[float("nan"), 1.0, 0.0]])
    h = Histories.from_lists([[0]])
    data = EvalSet(np.array([0]), h, Histories.from_lists([[1]]), h)
    res = evaluate(lambda u, hist: s.clone(), data, 3, ks=(1,))
    assert res.metrics["HR@1"] == 1.0


def test_unknown_ties_policy_raises():
    with pytest.raises(ValueError, match="ties"):
        run_library([[1.0, 0.0]], [[]], [[0]], [1], "random")


# ---- (g) top-k ----------------------------------------------------------------------------------


@st.composite
def score_rows(draw):
    n = draw(st.integers(1, 200))
    rows = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["few", "many", "float", "inf"]))
    if kind == "few":
        value = st.integers(0, 2).map(float)
    elif kind == "many":
        value = st.integers(0, 60).map(float)
    elif kind == "float":
        value = st.floats(-1e3, 1e3, allow_nan=False, width=32).map(f32)
    else:
        value = st.sampled_from([NEG_INF, 0.0, 1.0, 2.5, float("inf")])
    scores = [[draw(value) for _ in range(n)] for _ in range(rows)]
    k = draw(st.one_of(st.integers(1, max(1, n // 10)), st.integers(1, n + 5)))
    return scores, k


@settings(max_examples=100, deadline=None)
@given(score_rows())
def test_topk_items_is_stable_score_desc_id_asc(case):
    scores, k = case
    top = topk_items(torch.tensor(scores, dtype=torch.float32), k)
    assert top.tolist() == [brute_topk(row, k) for row in scores]


@pytest.mark.parametrize(
    "scores",
    [
        [float(100 - i) for i in range(100)],  # distinct: top-k window, no fallback
        [5.0, 5.0, *[3.0] * 5, *[float(-i) for i in range(93)]],  # tie at the cut inside the window
        [1.0] * 100,  # tie past the window: full-sort fallback
        [float(i % 7) for i in range(100)],  # many ties, ids interleaved
    ],
)
def test_topk_items_both_code_paths(scores):
    for k in (1, 3, 4, 12):
        assert topk_items(torch.tensor([scores]), k).tolist() == [brute_topk(scores, k)]


# ---- (h) evaluate: coverage and sampled metrics -------------------------------------------------


@st.composite
def eval_cases(draw, max_items: int = 25):
    n = draw(st.integers(1, max_items))
    users = draw(st.integers(1, 8))
    int_scores = draw(st.booleans())
    value = st.integers(0, 3).map(float) if int_scores else st.floats(-10, 10, width=32).map(f32)
    scores = [[draw(value) for _ in range(n)] for _ in range(users)]
    item = st.integers(0, n - 1)
    exclude = [draw(st.lists(item, max_size=n, unique=True)) for _ in range(users)]
    targets = [
        draw(st.lists(item, min_size=1 if u == 0 else 0, max_size=min(3, n), unique=True))
        for u in range(users)
    ]  # at least one user is evaluated
    return scores, exclude, targets


def make_eval(scores, exclude, targets):
    s = torch.tensor(scores, dtype=torch.float32)
    hist = Histories.from_lists(exclude)
    data = EvalSet(np.arange(len(scores)), hist, Histories.from_lists(targets), hist)

    def scorer(users, history):
        return s[torch.from_numpy(users)].clone()

    return data, scorer


@SETTINGS
@given(eval_cases(), st.sampled_from([(10,), (1, 3), (2, 10)]))
def test_evaluate_coverage_equals_brute_force(case, ks):
    scores, exclude, targets = case
    n = len(scores[0])
    data, scorer = make_eval(scores, exclude, targets)
    res = evaluate(scorer, data, n, ks=ks)
    k0 = min(ks)
    shown: set[int] = set()
    for r in range(len(scores)):
        if targets[r]:
            cand = candidates(scores[r], exclude[r])
            shown.update(sorted(cand, key=lambda i, s=scores[r]: (-s[i], i))[:k0])
    assert res.metrics[f"Coverage@{k0}"] == pytest.approx(len(shown) / n)
    assert res.n_users == sum(1 for t in targets if t)


@SETTINGS
@given(eval_cases(max_items=6), st.sampled_from(["expected", "pessimistic", "optimistic"]))
def test_evaluate_means_brute_force_per_user_metrics(case, ties):
    scores, exclude, targets = case
    data, scorer = make_eval(scores, exclude, targets)
    ks = (1, 3)
    res = evaluate(scorer, data, len(scores[0]), ks=ks, ties=ties, batch_size=2)
    rows = [r for r in range(len(scores)) if targets[r]]
    for key in ("MRR", "HR@1", "NDCG@3", "Recall@3", "HR@3"):
        ref = [brute(scores[r], exclude[r], targets[r], ks, ties)[key] for r in rows]
        assert res.metrics[key] == pytest.approx(sum(ref) / max(1, len(rows)), rel=1e-9, abs=1e-12)


def test_evaluate_sampled_metrics_are_prefixed_and_rank_only_sampled_items():
    n, n_users, neg = 40, 6, 7
    # the target always scores lowest among candidates: its rank is (#sampled negatives + 1)
    rng = np.random.default_rng(1)
    scores, exclude, targets = [], [], []
    for _ in range(n_users):
        perm = rng.permutation(n)
        t, ex = int(perm[0]), [int(x) for x in perm[1:6]]
        row = rng.permutation(n).astype(float) + 10.0
        row[t] = 0.0
        row[ex] = 1000.0  # excluded items would win if they were ever sampled
        scores.append(row.tolist())
        exclude.append(ex)
        targets.append([t])
    data, scorer = make_eval(scores, exclude, targets)
    res = evaluate(scorer, data, n, ks=(neg, neg + 1), ties="pessimistic", sampled_negatives=neg)
    prefix = f"sampled{neg}/"
    assert all(key.startswith(prefix) for key in res.metrics), res.metrics
    assert not any(key.startswith("Coverage") for key in res.metrics)
    assert res.metrics[f"{prefix}MRR"] == pytest.approx(1 / (neg + 1))
    assert res.metrics[f"{prefix}HR@{neg}"] == 0.0
    assert res.metrics[f"{prefix}HR@{neg + 1}"] == 1.0
    # every non-excluded non-target item sampled: the full ranking again
    all_neg = n - 5 - 1
    full = evaluate(scorer, data, n, ks=(10,), ties="pessimistic")
    samp = evaluate(scorer, data, n, ks=(10,), ties="pessimistic", sampled_negatives=all_neg)
    assert full.metrics["MRR"] == pytest.approx(1 / (n - 5))  # last of the 35 candidates
    assert samp.metrics[f"sampled{all_neg}/MRR"] == pytest.approx(full.metrics["MRR"])


@SETTINGS
@given(eval_cases(max_items=15), st.integers(1, 20))
def test_sampled_metrics_never_below_full_ranking_for_one_target(case, neg):
    scores, exclude, targets = case
    targets = [t[:1] for t in targets]
    data, scorer = make_eval(scores, exclude, targets)
    n = len(scores[0])
    full = evaluate(scorer, data, n, ks=(1, 5), keep_per_user=True)
    samp = evaluate(scorer, data, n, ks=(1, 5), sampled_negatives=neg, keep_per_user=True)
    for key in ("HR@1", "HR@5", "NDCG@5", "MRR"):
        assert np.all(samp.per_user[key] >= full.per_user[key] - 1e-12), key
        assert f"sampled{neg}/{key}" in samp.metrics
