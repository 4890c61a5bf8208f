"""POST /search: text match over item text, blended with taste when a history is given."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from playnext.data.interactions import Interactions


def test_text_search_matches_kind_and_genre(client: TestClient) -> None:
    r = client.post("/search", json={"query": "sci-fi movie", "k": 5})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == 5
    assert all(it["kind"] == "movie" and "sci-fi" in it["genres"] for it in items)
    assert all(it["explanation"]["method"] == "text" and it["taste_score"] is None for it in items)
    assert [it["score"] for it in items] == sorted((it["score"] for it in items), reverse=True)


def test_search_respects_filters(client: TestClient) -> None:
    items = client.post("/search", json={"query": "sci-fi movie", "k": 5, "kind": "game"}).json()["items"]
    assert items and all(it["kind"] == "game" for it in items)


def test_search_only_items_matches_recommend(client: TestClient) -> None:
    """Both endpoints share one filter mask: an empty only_items allows nothing, not everything."""
    plain = [
        it["item_id"]
        for it in client.post("/search", json={"query": "sci-fi movie", "k": 10}).json()["items"]
    ]
    some = client.post("/search", json={"query": "sci-fi movie", "k": 10, "only_items": plain[3:6]}).json()
    assert [it["item_id"] for it in some["items"]] == plain[3:6]
    none = client.post("/search", json={"query": "sci-fi movie", "k": 10, "only_items": []}).json()
    assert none["items"] == []


def test_taste_blend(client: TestClient, world: Interactions) -> None:
    user = world.users.external[4]
    plain = client.post("/search", json={"query": "rock music", "k": 10}).json()["items"]
    mine = client.post("/search", json={"query": "rock music", "k": 10, "user_id": user}).json()["items"]
    assert all(it["taste_score"] is not None and 0 <= it["taste_score"] <= 1 for it in mine)
    assert mine[0]["explanation"]["method"] == "text+taste"
    for it in mine:
        assert abs(it["score"] - (0.7 * it["text_score"] + 0.3 * it["taste_score"])) < 1e-5
    assert [x["item_id"] for x in plain] != [x["item_id"] for x in mine]
    text_only = client.post(
        "/search", json={"query": "rock music", "k": 10, "user_id": user, "blend": 0.0}
    ).json()["items"]
    seen = set(world.items.to_external(world.sequences()[4]))
    many = client.post("/search", json={"query": "rock music", "k": 100}).json()["items"]
    expected = [x["text_score"] for x in many if x["item_id"] not in seen][:10]
    assert [x["text_score"] for x in text_only] == pytest.approx(expected)


def test_search_disabled_without_text(make_client: Callable[..., TestClient], world: Interactions) -> None:
    c = make_client(text_encoder="none")
    r = c.post("/search", json={"query": "anything"})
    assert r.status_code == 422 and "text" in r.json()["detail"]
    assert c.get("/health").json()["text_encoder"] is None
    assert c.post("/recommend", json={"history": [world.items.external[0]]}).status_code == 200


def test_ann_index_serves_the_same_search(make_client: Callable[..., TestClient]) -> None:
    exact = make_client()
    ann = make_client(ann_threshold=100)
    assert ann.get("/health").json()["text_index"].startswith("faiss-")
    q = {"query": "horror movie", "k": 5}
    a = [x["item_id"] for x in exact.post("/search", json=q).json()["items"]]
    b = [x["item_id"] for x in ann.post("/search", json=q).json()["items"]]
    assert len(set(a) & set(b)) >= 4
