"""Re-rankers on planted answers: a calibrated list matches the history's mix, MMR spreads over
clusters, quotas are met or named as relaxed, novelty lifts the long tail — and a pure-Python
greedy confirms every pick is the best available one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playnext.data.interactions import Histories
from playnext.errors import ConfigError
from playnext.rerank import ItemFeatures, RerankSpec, greedy, parse_spec, rerank, rerank_rows, spec_from
from playnext.rerank.features import mix, smoothed_kl

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def drama_comedy(n: int = 300) -> tuple[ItemFeatures, np.ndarray, np.ndarray, np.ndarray]:
    """Items 0..149 drama (movies), 150..299 comedy (games 250..299); a 70/30 drama/comedy
    history; model scores that put every drama above every comedy."""
    genres = [["Drama"] if i < 150 else ["Comedy"] for i in range(n)]
    kinds = ["game" if i >= 250 else "movie" for i in range(n)]
    features = ItemFeatures.from_lists(genres, kinds, popularity=np.arange(n, 0, -1, dtype=float))
    history = np.array([0, 1, 2, 3, 4, 5, 6, 150, 151, 152])
    items = np.setdiff1d(np.arange(n), history)
    scores = np.where(items < 150, 10.0, 5.0) - items * 1e-3
    return features, history, items, scores


def n_drama(items: np.ndarray) -> int:
    return int((items < 150).sum())


def test_calibration_matches_the_history_mix_where_the_model_list_is_all_drama() -> None:
    f, history, items, scores = drama_comedy()
    raw = rerank(scores, items, history, f, RerankSpec(), 10).items
    assert n_drama(raw) == 10
    # every comedy scores far below every drama (and none is in the top-100 pool): a strong λ
    calibrated = rerank(scores, items, history, f, spec_from({"calibrate": {"lambda": 0.9}}), 10)
    assert n_drama(calibrated.items) == 7  # 70 % drama, 30 % comedy, as the history
    assert calibrated.applied == ["calibrate"] and calibrated.relaxed == []
    # the best of each genre, each genre in the model's order
    assert list(calibrated.items[calibrated.items < 150]) == list(raw[:7])
    p = f.history_mix(history)
    kl_raw = smoothed_kl(p, mix(f.genre_share, raw))
    kl_cal = smoothed_kl(p, mix(f.genre_share, calibrated.items))
    assert kl_cal < 0.01 < kl_raw


def test_calibration_strength_grows_with_lambda_and_zero_is_the_model_order() -> None:
    f, history, items, scores = drama_comedy()
    raw = rerank(scores, items, history, f, RerankSpec(), 10).items
    zero = rerank(scores, items, history, f, spec_from({"calibrate": {"lambda": 0.0}}), 10).items
    assert list(zero) == list(raw)
    counts = [
        n_drama(rerank(scores, items, history, f, spec_from({"calibrate": {"lambda": lam}}), 10).items)
        for lam in (0.0, 0.01, 0.05, 0.2, 1.0)
    ]
    assert counts == sorted(counts, reverse=True) and counts[0] == 10 and counts[-1] == 7


def test_lookahead_keeps_the_head_and_fixes_the_mix_at_the_tail() -> None:
    """A 70/30 drama/comedy history; the model's best item is a comedy, then dramas. Judged as a
    one-item list, the comedy is far from 70/30 and Steck's greedy (lookahead off) demotes it;
    judged as the first of ten, it costs nothing, so the lookahead keeps it first — and both end
    with the history's mix."""
    f, history, items, _ = drama_comedy()
    scores = np.where(items < 150, 10.0, 5.0) - items * 1e-3
    scores[items == 153] = 11.0  # one comedy the model is surest of
    spec = {"calibrate": {"lambda": 0.9}}
    ahead = rerank(scores, items, history, f, spec_from(spec), 10).items
    steck = rerank(
        scores, items, history, f, spec_from({"calibrate": {"lambda": 0.9, "lookahead": False}}), 10
    )
    assert ahead[0] == 153 and steck.items[0] != 153
    assert n_drama(ahead) == n_drama(steck.items) == 7
    assert list(ahead[:6]) == [153, *items[:5]]  # the model's own head, the comedies further down


def test_with_lookahead_the_mix_is_fixed_at_the_tail_and_dcg_slots_fix_more_of_it() -> None:
    """Every drama above every comedy, a 70/30 history. With lookahead the comedies go to the
    second half of the list at every λ, where Steck's partial-list greedy puts some at the head;
    slots weighed as NDCG weighs them make relevance cheaper after the first slot, so the same λ
    calibrates at least as much."""
    f, history, items, scores = drama_comedy()

    def comedy_slots(lam: float, lookahead: bool, slots: str) -> list[int]:
        spec = spec_from({"calibrate": {"lambda": lam, "lookahead": lookahead}, "slots": slots})
        return [t for t, i in enumerate(rerank(scores, items, history, f, spec, 10).items) if i >= 150]

    lams = (0.1, 0.2, 0.3, 0.5)
    for lam in lams:
        equal, dcg = comedy_slots(lam, True, "equal"), comedy_slots(lam, True, "dcg")
        assert all(t >= 5 for t in equal + dcg), (lam, equal, dcg)
        assert len(dcg) >= len(equal)
    assert any(len(comedy_slots(lam, True, "dcg")) > len(comedy_slots(lam, True, "equal")) for lam in lams)
    assert any(min(comedy_slots(lam, False, "equal"), default=10) < 5 for lam in lams)


def test_calibration_by_kind() -> None:
    f, history, items, scores = drama_comedy()
    history = np.array([0, 1, 2, 3, 4, 250, 251, 252, 253, 254])  # half movies, half games
    out = rerank(scores, items, history, f, spec_from({"calibrate": {"lambda": 1.0, "by": "kind"}}), 10)
    assert int((out.items >= 250).sum()) == 5


def clusters() -> tuple[ItemFeatures, np.ndarray, np.ndarray]:
    """30 items in three tight vector clusters; the model ranks all of cluster 0 first."""
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8)
    vecs = np.repeat(centres, 10, axis=0) + 0.01 * rng.standard_normal((30, 8))
    f = ItemFeatures.from_lists([[] for _ in range(30)], [None] * 30, vectors=vecs)
    return f, np.arange(30), 3.0 - np.arange(30) * 0.01


def test_mmr_spreads_the_top_over_clusters_and_zero_is_the_model_order() -> None:
    f, items, scores = clusters()
    empty = np.zeros(0, dtype=np.int64)
    assert list(rerank(scores, items, empty, f, spec_from({"mmr": {"lambda": 0.0}}), 3).items) == [0, 1, 2]
    out = rerank(scores, items, empty, f, spec_from({"mmr": {"lambda": 0.5}}), 3)
    assert sorted(out.items // 10) == [0, 1, 2] and out.items[0] == 0
    assert out.similarity == "embedding"


def test_mmr_on_genres_without_vectors() -> None:
    genres = [["a"]] * 5 + [["b"]] * 5
    f = ItemFeatures.from_lists(genres, [None] * 10)
    out = rerank(10.0 - np.arange(10), np.arange(10), np.zeros(0, np.int64), f, spec_from({"mmr": {}}), 2)
    assert list(out.items) == [0, 5] and out.similarity == "genres"
    with pytest.raises(ConfigError, match=r"mmr\.by=embedding.*no vectors"):
        rerank(
            np.ones(10), np.arange(10), np.zeros(0, np.int64), f, spec_from({"mmr": {"by": "embedding"}}), 2
        )


def test_min_per_kind_is_met_from_beyond_the_pool() -> None:
    f, history, items, scores = drama_comedy()
    spec = spec_from({"quota": {"min_per_kind": {"game": 2}}, "pool": 20})
    out = rerank(scores, items, history, f, spec, 10)
    assert int((out.items >= 250).sum()) == 2 and out.relaxed == []
    assert list(out.items[:8]) == list(items[:8])  # the model's best fill the other slots, in order
    assert out.pool == 22  # the top 20 and the best 2 games


def test_max_per_genre_caps_the_list() -> None:
    f, history, items, scores = drama_comedy()
    out = rerank(scores, items, history, f, spec_from({"quota": {"max_per_genre": 6}}), 10)
    assert n_drama(out.items) == 6 and out.relaxed == []


def test_an_unmeetable_quota_returns_the_best_list_and_names_what_was_relaxed() -> None:
    f, history, items, scores = drama_comedy()
    only_two_games = items[(items < 250) | (items >= 298)]  # 298, 299 are the only games left
    s = scores[np.isin(items, only_two_games)]
    spec = spec_from({"quota": {"min_per_kind": {"game": 5}, "max_per_genre": 8}})
    out = rerank(s, only_two_games, history, f, spec, 10)
    assert len(out.items) == 10 and {298, 299} <= set(out.items)
    assert n_drama(out.items) == 8  # the genre cap still holds
    assert [r.as_dict() for r in out.relaxed] == [
        {"constraint": "min_per_kind", "key": "game", "wanted": 5, "got": 2}
    ]
    # every candidate is a drama: a full list of 10 beats the cap of 3, and says so
    dramas = items[items < 150]
    capped = rerank(scores[: len(dramas)], dramas, history, f, spec_from({"quota": {"max_per_genre": 3}}), 10)
    assert len(capped.items) == 10
    assert [r.as_dict() for r in capped.relaxed] == [
        {"constraint": "max_per_genre", "key": "Drama", "wanted": 3, "got": 10}
    ]


def test_min_per_kind_wins_over_max_per_genre_when_they_conflict() -> None:
    f, history, items, scores = drama_comedy()
    spec = spec_from({"quota": {"min_per_kind": {"game": 4}, "max_per_genre": 2}})
    out = rerank(scores, items, history, f, spec, 10)
    assert int((out.items >= 250).sum()) == 4
    assert {r.constraint for r in out.relaxed} == {"max_per_genre"}


def test_unknown_quota_kind_is_a_config_error_naming_the_known() -> None:
    f, history, items, scores = drama_comedy()
    with pytest.raises(ConfigError, match=r"unknown kind.*tv; known: game, movie"):
        rerank(scores, items, history, f, spec_from({"quota": {"min_per_kind": {"tv": 1}}}), 10)


def test_novelty_weight_lifts_the_long_tail() -> None:
    n = 30
    tail = np.arange(n) % 2 == 1  # the model alternates blockbusters (even) and tail items (odd)
    f = ItemFeatures.from_lists([[] for _ in range(n)], [None] * n, popularity=np.where(tail, 1.0, 1000.0))
    scores, items, empty = -np.arange(n, dtype=float), np.arange(n), np.zeros(0, np.int64)
    assert list(rerank(scores, items, empty, f, spec_from({"novelty": {"weight": 0}}), 5).items) == [
        0,
        1,
        2,
        3,
        4,
    ]
    # the top blockbuster keeps its place against all but the best tail item
    assert list(rerank(scores, items, empty, f, spec_from({"novelty": {"weight": 0.5}}), 5).items) == [
        1,
        0,
        3,
        5,
        7,
    ]
    assert list(rerank(scores, items, empty, f, spec_from({"novelty": {"weight": 1.0}}), 5).items) == [
        1,
        3,
        5,
        7,
        9,
    ]


def test_rerank_rows_matches_one_call_per_row_and_pads() -> None:
    f, history, items, scores = drama_comedy()
    full = np.full((2, f.n), -np.inf)
    full[0, items] = scores
    full[1, :3] = [1.0, 2.0, 3.0]  # a row with only three candidates
    spec = spec_from({"calibrate": {"lambda": 0.9}})
    rows = rerank_rows(full, Histories.from_lists([history, []]), f, spec, 10)
    assert list(rows[0]) == list(rerank(scores, items, history, f, spec, 10).items)
    assert list(rows[1]) == [2, 1, 0] + [-1] * 7


# ---- every pick is the greedy's best: a pure-Python reference ------------------------------------------
def reference_gains(
    rel: list[float],
    cats: list[dict[int, float]],
    vecs: list[list[float]],
    p: dict[int, float],
    chosen: list[int],
    lam_c: float,
    lam_m: float,
    alpha: float,
    open_slots: int = 0,
    slot_weight: float = 1.0,
) -> list[float]:
    """Each candidate's gain given the picks so far, from the definitions, with dicts and loops:
    `open_slots` more items complete the list (lookahead) at p's largest categories, as many as
    they can carry (open × the candidates' mean number of categories), renormalised; the slot
    being filled weighs relevance by `slot_weight`."""
    carriers = [len(c) for c in cats if c]
    per_item = sum(carriers) / len(carriers) if carriers else 1.0
    top = sorted(p, key=lambda g: (-p[g], g))[: math.ceil(open_slots * per_item)]
    rest = {g: (p[g] / sum(p[h] for h in top) if g in top else 0.0) for g in p}
    out = []
    for i in range(len(rel)):
        listed = [*chosen, i]
        mass = sum(sum(cats[j].values()) for j in listed) + open_slots
        q = {
            g: (sum(cats[j].get(g, 0.0) for j in listed) + open_slots * rest[g]) / mass if mass else 0.0
            for g in p
        }
        kl = sum(pg * math.log(pg / ((1 - alpha) * q[g] + alpha * pg)) for g, pg in p.items() if pg > 0)
        r = rel[i] * slot_weight
        gain = (1 - lam_c) * r - lam_c * kl if p and lam_c > 0 else r
        if lam_m > 0:
            sims = [
                sum(a * b for a, b in zip(vecs[i], vecs[j], strict=True))
                / (math.hypot(*vecs[i]) * math.hypot(*vecs[j]) or 1.0)
                for j in chosen
            ]
            gain = (1 - lam_m) * gain - lam_m * (max(sims) if sims else 0.0)
        out.append(gain)
    return out


@SETTINGS
@given(
    n=st.integers(2, 12),
    k=st.integers(1, 6),
    lam_c=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
    lam_m=st.sampled_from([0.0, 0.4, 1.0]),
    relevance=st.sampled_from(["rank", "prob"]),
    lookahead=st.booleans(),
    slots=st.sampled_from(["equal", "dcg"]),
    seed=st.integers(0, 10_000),
)
def test_every_pick_is_the_best_gain_by_the_definitions(
    n: int, k: int, lam_c: float, lam_m: float, relevance: str, lookahead: bool, slots: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c", "d"]
    genres = [list(rng.choice(names, size=rng.integers(0, 3), replace=False)) for _ in range(n + 4)]
    vecs = rng.standard_normal((n + 4, 3)) + 0.1
    f = ItemFeatures.from_lists(genres, [None] * (n + 4), vectors=vecs)
    history = np.arange(n, n + 4)
    items = np.arange(n)
    scores = rng.integers(0, 4, size=n).astype(float)  # ties on purpose
    spec = spec_from(
        {
            "calibrate": {"lambda": lam_c, "lookahead": lookahead},
            "mmr": {"lambda": lam_m, "by": "embedding"},
            "relevance": relevance,
            "slots": slots,
        }
    )
    out = rerank(scores, items, history, f, spec, k).items
    assert len(out) == min(k, n) and len(set(out)) == len(out)
    model_order = sorted(range(n), key=lambda i: (-scores[i], i))
    rel = [0.0] * n
    total = sum(math.exp(x) for x in scores)
    for place, i in enumerate(model_order, 1):
        # NDCG's weight of the model's place, or the model's softmax probability
        rel[i] = 1.0 / math.log2(1 + place) if relevance == "rank" else math.exp(scores[i]) / total
    share = f.genre_share.toarray()
    cats = [{g: float(share[i, g]) for g in np.flatnonzero(share[i])} for i in range(n)]
    p_arr = f.history_mix(history)
    p = {int(g): float(p_arr[g]) for g in np.flatnonzero(p_arr)}
    chosen: list[int] = []
    for t, pick in enumerate(out):
        open_slots = min(k, n) - t - 1 if lookahead else 0
        weight = 1.0 / math.log2(2 + t) if slots == "dcg" else 1.0
        gains = reference_gains(rel, cats, vecs.tolist(), p, chosen, lam_c, lam_m, 0.01, open_slots, weight)
        best = max(g for i, g in enumerate(gains) if i not in chosen)
        assert gains[int(pick)] >= best - 1e-9, (chosen, int(pick), gains)
        chosen.append(int(pick))


@SETTINGS
@given(
    n=st.integers(0, 40),
    k=st.integers(1, 12),
    games=st.integers(0, 6),
    cap=st.integers(1, 5),
    seed=st.integers(0, 10_000),
)
def test_quotas_hold_whenever_they_can_and_relaxations_are_exactly_the_misses(
    n: int, k: int, games: int, cap: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    kinds = [str(rng.choice(["game", "movie"])) for _ in range(n)]
    genres = [[str(rng.choice(["x", "y", "z"]))] for _ in range(n)]
    f = ItemFeatures.from_lists(genres, kinds) if n else ItemFeatures.from_lists([], [])
    if "game" not in f.kind_names:
        return
    spec = spec_from({"quota": {"min_per_kind": {"game": games}, "max_per_genre": cap}, "pool": 10})
    out = rerank(rng.random(n), np.arange(n), np.zeros(0, np.int64), f, spec, k)
    assert len(out.items) == min(k, n)  # a full list whenever there are enough candidates
    got_games = sum(kinds[i] == "game" for i in out.items)
    available = sum(k_ == "game" for k_ in kinds)
    assert got_games >= min(games, available, len(out.items))  # min_per_kind is met when possible
    per_genre: dict[str, int] = {}
    for i in out.items:
        per_genre[genres[i][0]] = per_genre.get(genres[i][0], 0) + 1
    expected = [("min_per_kind", "game")] if got_games < games else []
    expected += [("max_per_genre", g) for g in sorted(per_genre) if per_genre[g] > cap]
    assert [(r.constraint, r.key) for r in out.relaxed] == expected
    have = {g: sum(gs[0] == g for gs in genres) for g in ("x", "y", "z")}
    if games == 0 and sum(min(c, cap) for c in have.values()) >= len(out.items):
        assert not expected  # the cap alone can be met, so it is


def test_prob_relevance_is_the_softmax_over_every_candidate_not_the_pool() -> None:
    f, _, items, scores = drama_comedy()
    spec = spec_from({"relevance": "prob", "pool": 10, "novelty": {"weight": 0.0}})
    pos = np.argsort(-scores, kind="stable")[:10]
    lse = greedy._logsumexp(scores)
    rel = greedy._relevance(scores[pos], items[pos], f, spec, lse)
    softmax = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    np.testing.assert_allclose(rel, softmax[pos])
    assert rel.sum() < 0.1  # 140 dramas share the mass: the pool's ten hold little of it


def test_prob_relevance_keeps_the_items_the_model_is_sure_of() -> None:
    """Rank weights see the same first-to-tenth places whatever the model's confidence;
    probabilities let calibration move only the items the model is unsure of."""
    f, _, _, _ = drama_comedy()
    history = np.arange(150, 160)  # comedies only: calibration wants no drama at all
    items = np.setdiff1d(np.arange(f.n), history)
    flat = np.where(items < 150, 1.0, 0.0) - items * 1e-3  # every drama a little likelier
    sure = flat + np.where(items == 0, 12.0, 0.0)  # drama 0 near-certain (p ≈ 0.999)

    def top(scores: np.ndarray, relevance: str) -> list[int]:
        spec = spec_from({"calibrate": {"lambda": 0.5}, "relevance": relevance})
        return [int(i) for i in rerank(scores, items, history, f, spec, 10).items]

    assert n_drama(np.array(top(flat, "prob"))) == 0  # unsure: all comedy, as the history
    assert 0 in top(sure, "prob") and n_drama(np.array(top(sure, "prob"))) == 1  # sure: kept
    assert top(flat, "rank") == top(sure, "rank")  # ranks cannot tell the two apart


# ---- the spec: validated, with the field and the allowed range ----------------------------------------
@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"calibrate": {"lambda": 1.5}}, r"calibrate\.lambda: must be in \[0, 1\], got 1\.5"),
        ({"mmr": {"lambda": -0.1}}, r"mmr\.lambda: must be in \[0, 1\], got -0\.1"),
        ({"novelty": {"weight": 2}}, r"novelty\.weight: must be in \[0, 1\]"),
        ({"calibrate": {"alpha": 0}}, r"calibrate\.alpha: must be in \[0\.0001, 0\.5\]"),
        ({"pool": 5}, r"pool: must be in 10\.\.1000, got 5"),
        ({"quota": {"max_per_genre": 0}}, r"quota\.max_per_genre: must be in 1\.\.1000"),
        ({"quota": {"min_per_kind": {"game": -1}}}, r"quota\.min_per_kind\.game: must be in 0\.\.1000"),
        ({"calibrate": {"by": "mood"}}, r"calibrate\.by: Input should be 'genre' or 'kind'"),
        ({"relevance": "logit"}, r"relevance: Input should be 'rank' or 'prob'"),
        ({"calibrat": {}}, r"unknown re-ranker\(s\) calibrat \(did you mean calibrate\?\); known: novelty, "),
        (
            {"mmr": {"lamda": 0.2}},
            r"mmr: unknown parameter\(s\) lamda \(did you mean lambda\?\); known: lambda, by",
        ),
    ],
)
def test_bad_specs_name_the_field_and_the_allowed_range(doc: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        spec_from(doc)


def test_parse_spec_from_command_line_strings() -> None:
    assert parse_spec(None) is None
    spec = parse_spec(
        [
            "calibrate:lambda=0.4,by=kind,lookahead=false",
            "mmr:by=genres",
            "quota:max_per_genre=3,min_per_kind.game=2",
            "pool=200",
            "slots=dcg",
        ]
    )
    assert spec is not None
    assert spec.describe() == {
        "calibrate": {"lambda": 0.4, "alpha": 0.01, "by": "kind", "lookahead": False},
        "mmr": {"lambda": 0.3, "by": "genres"},
        "quota": {"min_per_kind": {"game": 2}, "max_per_genre": 3},
        "pool": 200,
        "relevance": "rank",
        "slots": "dcg",
    }
    assert spec.applied == ["calibrate", "mmr", "quota"]  # the fixed order, not the given one
    assert parse_spec(['{"novelty": {"weight": 0.1}}', "calibrate"]).applied == ["novelty", "calibrate"]  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_spec(["calibrate:lambda"])
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_spec(["{nope"])
    with pytest.raises(ConfigError, match=r"--rerank: calibrate\.lambda: must be in \[0, 1\], got 2"):
        parse_spec(["calibrate:lambda=2"])
