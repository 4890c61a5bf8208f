"""Beyond-accuracy metrics against brute-force references written from their definitions with
Python sets, dicts and loops; and `evaluate` averaging them over exactly the users they apply to."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playnext.data.interactions import Histories
from playnext.data.split import EvalSet
from playnext.evaluate import beyond
from playnext.evaluate.protocol import evaluate
from playnext.rerank import ItemFeatures, list_reranker, spec_from

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GENRES = ["a", "b", "c", "d"]


@st.composite
def catalogs(draw: st.DrawFn) -> tuple[list[list[str]], np.ndarray, np.ndarray, list[list[int]]]:
    """(item genres, item vectors, item counts, lists padded with -1)."""
    n = draw(st.integers(2, 12))
    genres = [draw(st.lists(st.sampled_from(GENRES), max_size=3, unique=True)) for _ in range(n)]
    vecs = np.array(
        draw(st.lists(st.lists(st.integers(-3, 3), min_size=3, max_size=3), min_size=n, max_size=n))
    )
    counts = np.array(draw(st.lists(st.integers(0, 50), min_size=n, max_size=n)))
    k = draw(st.integers(1, 5))
    lists = []
    for _ in range(draw(st.integers(1, 5))):
        row = draw(st.lists(st.integers(0, n - 1), max_size=k, unique=True))
        lists.append(row + [-1] * (k - len(row)))
    return genres, vecs.astype(np.float64), counts, lists


def ref_pairs_mean(row: list[int], dissim) -> float:
    items = [i for i in row if i >= 0]
    pairs = list(itertools.combinations(items, 2))
    return sum(dissim(a, b) for a, b in pairs) / len(pairs) if pairs else math.nan


def same(lib: np.ndarray, ref: list[float]) -> None:
    assert len(lib) == len(ref)
    for x, y in zip(lib, ref, strict=True):
        assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-9, abs=1e-12)


@SETTINGS
@given(catalogs())
def test_genre_diversity_is_mean_pairwise_one_minus_jaccard(cat) -> None:
    genres, _, _, lists = cat
    f = ItemFeatures.from_lists(genres, [None] * len(genres))

    def dissim(a: int, b: int) -> float:
        sa, sb = set(genres[a]), set(genres[b])
        return 1.0 - (len(sa & sb) / len(sa | sb) if sa | sb else 0.0)

    same(beyond.genre_diversity(np.array(lists), f), [ref_pairs_mean(r, dissim) for r in lists])


@SETTINGS
@given(catalogs())
def test_embedding_diversity_is_mean_pairwise_one_minus_cosine(cat) -> None:
    _, vecs, _, lists = cat

    def dissim(a: int, b: int) -> float:
        na, nb = math.sqrt(sum(x * x for x in vecs[a])), math.sqrt(sum(x * x for x in vecs[b]))
        dot = sum(x * y for x, y in zip(vecs[a], vecs[b], strict=True))
        return 1.0 - (dot / (na * nb) if na and nb else 0.0)

    lib = beyond.embedding_diversity(np.array(lists), vecs)
    ref = [ref_pairs_mean(r, dissim) for r in lists]
    for x, y in zip(lib, ref, strict=True):  # float32 vectors inside
        assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, abs=1e-6)


@SETTINGS
@given(catalogs(), st.data())
def test_miscalibration_is_smoothed_kl_of_history_mix_to_list_mix(cat, data) -> None:
    genres, _, _, lists = cat
    n = len(genres)
    histories = [data.draw(st.lists(st.integers(0, n - 1), max_size=6)) for _ in lists]
    f = ItemFeatures.from_lists(genres, [None] * n)
    alpha = 0.01

    def mix(items: list[int]) -> dict[str, float]:
        total: dict[str, float] = {}
        for i in items:
            for g in genres[i]:
                total[g] = total.get(g, 0.0) + 1.0 / len(genres[i])
        s = sum(total.values())
        return {g: v / s for g, v in total.items()} if s else {}

    ref = []
    for row, hist in zip(lists, histories, strict=True):
        p, q = mix(hist), mix([i for i in row if i >= 0])
        if not p:
            ref.append(math.nan)
            continue
        ref.append(sum(pg * math.log(pg / ((1 - alpha) * q.get(g, 0.0) + alpha * pg)) for g, pg in p.items()))
    same(beyond.miscalibration(np.array(lists), Histories.from_lists(histories), f, alpha=alpha), ref)


@SETTINGS
@given(catalogs())
def test_coverage_and_novelty(cat) -> None:
    genres, _, counts, lists = cat
    n = len(genres)
    shown = {i for r in lists for i in r if i >= 0}
    assert beyond.catalog_coverage(np.array(lists), n) == pytest.approx(len(shown) / n)
    total = max(sum(int(c) for c in counts), 1)

    def info(i: int) -> float:
        return -math.log2(max(int(counts[i]), 1) / total)

    ref = [
        sum(info(i) for i in r if i >= 0) / len([i for i in r if i >= 0])
        if any(i >= 0 for i in r)
        else math.nan
        for r in lists
    ]
    same(beyond.novelty(np.array(lists), counts), ref)


def test_evaluate_averages_beyond_metrics_over_the_users_they_apply_to() -> None:
    """Two users: one with a genre history (miscalibration defined), one without (skipped)."""
    genres = [["x"], ["x"], ["y"], ["y"], [], []]
    f = ItemFeatures.from_lists(genres, [None] * 6)
    data = EvalSet(
        users=np.array([0, 1]),
        history=Histories.from_lists([[0, 2], [4]]),
        targets=Histories.from_lists([[1], [5]]),
        exclude=Histories.from_lists([[0, 2], [4]]),
    )
    scores = torch.tensor([[0.0, 5.0, 0.0, 1.0, 4.0, 3.0], [6.0, 5.0, 4.0, 3.0, 0.0, 2.0]])
    res = evaluate(lambda users, h: scores[torch.as_tensor(users)], data, 6, ks=(2,), features=f)
    lists = np.array([[1, 4], [0, 1]])  # each row's top-2 among unseen items
    misc = beyond.miscalibration(lists, data.history, f)
    assert np.isnan(misc[1]) and res.metrics["Miscalibration@2"] == pytest.approx(misc[0])
    assert res.metrics["ILD-genre@2"] == pytest.approx(np.nanmean(beyond.genre_diversity(lists, f)))
    assert "ILD-embedding@2" not in res.metrics  # no vectors, no embedding diversity


def test_evaluate_with_a_reranker_scores_the_lists_users_see() -> None:
    """The target is the model's 3rd item but the only comedy: calibrating a half-comedy history
    lifts it into the top 2, so HR@2 goes from 0 to 1 and miscalibration drops."""
    genres = [["drama"]] * 4 + [["comedy"]] * 4
    f = ItemFeatures.from_lists(genres, [None] * 8)
    data = EvalSet(
        users=np.array([0]),
        history=Histories.from_lists([[0, 4]]),
        targets=Histories.from_lists([[5]]),
        exclude=Histories.from_lists([[0, 4]]),
    )
    scores = torch.tensor([[0.0, 9.0, 8.0, 1.0, 0.0, 7.0, 0.5, 0.2]])
    scorer = lambda users, h: scores  # noqa: E731
    plain = evaluate(scorer, data, 8, ks=(2,), features=f).metrics
    spec = spec_from({"calibrate": {"lambda": 0.5}, "pool": 10})
    rer = evaluate(scorer, data, 8, ks=(2,), features=f, rerank=list_reranker(f, spec, 2)).metrics
    assert plain["HR@2"] == 0.0 and rer["HR@2"] == 1.0
    assert rer["Miscalibration@2"] < plain["Miscalibration@2"]
    with pytest.raises(ValueError, match="sampled_negatives"):
        evaluate(scorer, data, 8, ks=(2,), rerank=list_reranker(f, spec, 2), sampled_negatives=3)
