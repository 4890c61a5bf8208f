"""Re-ranking through the API: per-request options on /recommend and /search, the summary in the
answer, quotas met or named as relaxed, and 422s that name the field and its allowed range."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
from fastapi.testclient import TestClient

from playnext.artifact import Artifact
from playnext.data.interactions import Interactions


def ids_of_kind(world: Interactions, kind: str, n: int) -> list[str]:
    kinds = world.meta.get_column("kind").to_list()
    popular = np.argsort(-world.item_counts(), kind="stable")
    return [world.items.external[int(i)] for i in popular if kinds[int(i)] == kind][:n]


def test_calibrated_list_has_the_history_kind_mix_and_the_answer_says_so(
    client: TestClient, world: Interactions
) -> None:
    history = ids_of_kind(world, "movie", 7) + ids_of_kind(world, "game", 3)
    body = {"history": history, "k": 10}
    plain = client.post("/recommend", json=body).json()
    assert plain["rerank"] is None
    cal = {"calibrate": {"lambda": 1.0, "by": "kind"}}
    r = client.post("/recommend", json={**body, "rerank": cal})
    assert r.status_code == 200, r.text
    got = r.json()
    assert Counter(it["kind"] for it in got["items"]) == {"movie": 7, "game": 3}
    assert Counter(it["kind"] for it in plain["items"]) != {"movie": 7, "game": 3}
    assert [set(it) for it in got["items"]] == [set(it) for it in plain["items"]]  # same item shape
    assert [it["rank"] for it in got["items"]] == list(range(1, 11))
    assert got["rerank"] == {
        "applied": ["calibrate"],
        "params": {
            "calibrate": {"lambda": 1.0, "alpha": 0.01, "by": "kind", "lookahead": True},
            "pool": 100,
            "relevance": "rank",
            "slots": "equal",
        },
        "pool": got["rerank"]["pool"],
        "similarity": None,
        "relaxed": [],
    }
    assert got["rerank"]["pool"] >= 100


def test_quotas_are_met_or_relaxed_by_name(client: TestClient, world: Interactions) -> None:
    user = world.users.external[0]
    plain = client.post("/recommend", json={"user_id": user, "k": 10}).json()["items"]
    games = sum(it["kind"] == "game" for it in plain)
    want = games + 2
    r = client.post(
        "/recommend",
        json={
            "user_id": user,
            "k": 10,
            "rerank": {"quota": {"min_per_kind": {"game": want}, "max_per_genre": 3}},
        },
    ).json()
    assert sum(it["kind"] == "game" for it in r["items"]) >= want
    per_genre = Counter(g for it in r["items"] for g in it["genres"])
    assert max(per_genre.values()) <= 3 and r["rerank"]["relaxed"] == []
    # only movies may come back, yet two games are asked for: the best movie list, and why
    r = client.post(
        "/recommend",
        json={"user_id": user, "k": 10, "kind": "movie", "rerank": {"quota": {"min_per_kind": {"game": 2}}}},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == 10 and {it["kind"] for it in body["items"]} == {"movie"}
    assert body["rerank"]["relaxed"] == [{"constraint": "min_per_kind", "key": "game", "wanted": 2, "got": 0}]


def test_mmr_and_novelty(client: TestClient, world: Interactions) -> None:
    user = world.users.external[0]  # the model lists several tracks of one album
    body = {"user_id": user, "k": 10, "explain": False}
    plain = client.post("/recommend", json=body).json()["items"]
    diverse = client.post("/recommend", json={**body, "rerank": {"mmr": {"lambda": 0.7}}}).json()
    assert diverse["rerank"]["similarity"] == "embedding"  # EASE has no vectors: the text index's

    def series(items: list[dict]) -> int:
        return len({it["title"].rsplit(" ", 1)[0] for it in items})

    assert series(plain) < series(diverse["items"]) == 10
    assert diverse["items"][0]["item_id"] == plain[0]["item_id"]  # the best item still leads
    counts = world.item_counts()
    pop = {world.items.external[i]: counts[i] for i in range(len(counts))}
    novel = client.post("/recommend", json={**body, "rerank": {"novelty": {"weight": 1.0}}}).json()["items"]
    assert np.mean([pop[it["item_id"]] for it in novel]) < np.mean([pop[it["item_id"]] for it in plain])


def test_search_takes_the_same_rerank_options(client: TestClient) -> None:
    body = {"query": "space adventure", "k": 8}
    r = client.post("/search", json={**body, "rerank": {"quota": {"max_per_genre": 2}}})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["rerank"]["applied"] == ["quota"] and got["rerank"]["relaxed"] == []
    assert max(Counter(g for it in got["items"] for g in it["genres"]).values()) <= 2
    assert all(it["explanation"]["method"] == "text" for it in got["items"])
    assert client.post("/search", json=body).json()["rerank"] is None


def test_bad_rerank_options_are_422_naming_the_field_and_range(
    client: TestClient, world: Interactions
) -> None:
    user = world.users.external[0]

    def detail(rerank: object) -> object:
        r = client.post("/recommend", json={"user_id": user, "rerank": rerank})
        assert r.status_code == 422, r.text
        return r.json()["detail"]

    (err,) = detail({"calibrate": {"lambda": 1.5}})  # type: ignore[misc]
    assert err["loc"][-3:] == ["rerank", "calibrate", "lambda"] and "must be in [0, 1], got 1.5" in err["msg"]
    (err,) = detail({"pool": 5000})  # type: ignore[misc]
    assert err["loc"][-1] == "pool" and "must be in 10..1000" in err["msg"]
    (err,) = detail({"diversify": {}})  # type: ignore[misc]
    assert "unknown re-ranker(s) diversify; known: novelty, calibrate, mmr, quota" in err["msg"]
    (err,) = detail({"mmr": {"lambda": 0.2, "by": "colour"}})  # type: ignore[misc]
    assert err["loc"][-2:] == ["mmr", "by"]
    (err,) = detail({"calibrate": {}, "relevance": "score"})  # type: ignore[misc]
    assert err["loc"][-1] == "relevance" and "Input should be 'rank' or 'prob'" in err["msg"]
    ok = client.post("/recommend", json={"user_id": user, "rerank": {"calibrate": {}, "relevance": "prob"}})
    assert ok.status_code == 200 and ok.json()["rerank"]["params"]["relevance"] == "prob"
    # /search ranks by a blend of cosines and percentiles: no logits to take a softmax of
    r = client.post("/search", json={"query": "space", "rerank": {"calibrate": {}, "relevance": "prob"}})
    assert r.status_code == 422 and "rerank.relevance=prob" in r.json()["detail"]
    assert detail({"quota": {"min_per_kind": {"tv": 1}}}) == (
        "rerank.quota.min_per_kind: unknown kind(s) tv; known: game, movie, music"
    )


def test_cold_items_are_re_ranked_with_the_rest(
    make_client: Callable[..., TestClient], auth: dict[str, str], world: Interactions, artifact: Artifact
) -> None:
    client = make_client()
    engine = client.app.state.holder.engine  # type: ignore[attr-defined]
    before = engine.features().n
    new = {
        "item_id": "cold-game",
        "title": "Brand New Quest",
        "kind": "game",
        "genres": ["rpg"],
        "year": 2025,
    }
    assert client.post("/items", json=new, headers=auth).status_code == 201
    r = client.post(
        "/recommend",
        json={
            "history": ids_of_kind(world, "movie", 5),
            "only_items": ["cold-game", *ids_of_kind(world, "movie", 40)],
            "rerank": {"quota": {"min_per_kind": {"game": 1}}},
            "k": 5,
        },
    )
    assert r.status_code == 200, r.text
    assert "cold-game" in [it["item_id"] for it in r.json()["items"]]
    assert engine.features().n == before + 1 == engine.n_items


def test_openapi_documents_the_ranges(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    lam = schemas["Calibrate"]["properties"]["lambda"]
    assert (lam["minimum"], lam["maximum"]) == (0.0, 1.0)
    assert "rerank" in schemas["RecommendRequest"]["properties"]
    assert "rerank" in schemas["RecommendResponse"]["properties"]
