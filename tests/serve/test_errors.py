"""Bad input gets a 4xx that names the problem — never a 5xx."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from playnext.data.interactions import Interactions


def test_unknown_ids_are_named(client: TestClient, world: Interactions) -> None:
    r = client.post("/recommend", json={"user_id": "nobody-42"})
    assert r.status_code == 422 and "nobody-42" in r.json()["detail"]
    known = world.items.external[0]
    r = client.post("/recommend", json={"history": [known, "nope-1", "nope-2", "nope-1"]})
    assert r.status_code == 422
    assert r.json()["unknown"] == ["nope-1", "nope-2"] and "nope-2" in r.json()["detail"]
    r = client.post("/recommend", json={"history": [known], "exclude_items": ["zzz"]})
    assert r.status_code == 422 and "zzz" in r.json()["detail"]
    r = client.post("/recommend", json={"session_id": "never-made"})
    assert r.status_code == 422 and "never-made" in r.json()["detail"]
    r = client.get("/items/no-such-item/similar")
    assert r.status_code == 404 and "no-such-item" in r.json()["detail"]
    assert client.get("/items/no-such-item").status_code == 404
    r = client.post("/recommend", json={"history": [known], "kind": "podcast"})
    assert r.status_code == 422 and "podcast" in r.json()["detail"] and "movie" in r.json()["detail"]
    r = client.post("/recommend", json={"history": [known], "genres": ["polka"]})
    assert r.status_code == 422 and "polka" in r.json()["detail"]


def test_limits_are_configurable(make_client: Callable[..., TestClient], world: Interactions) -> None:
    c = make_client(max_k=5, max_history=3, max_body_bytes=2048)
    items = world.items.external.to_list()
    assert c.post("/recommend", json={"history": items[:1], "k": 5}).status_code == 200
    r = c.post("/recommend", json={"history": items[:1], "k": 6})
    assert r.status_code == 422 and "k=6" in r.json()["detail"]
    r = c.post("/recommend", json={"history": items[:4], "k": 5})
    assert r.status_code == 422 and "limit is 3" in r.json()["detail"]
    assert c.post("/recommend", json={"history": items[:1], "k": 0}).status_code == 422
    r = c.post("/recommend", json={"history": items[:300], "k": 5})
    assert r.status_code == 413
    assert c.get(f"/items/{items[0]}/similar", params={"k": 6}).status_code == 422


def test_malformed_requests(client: TestClient, world: Interactions) -> None:
    item = world.items.external[0]
    assert client.post("/recommend", json={}).status_code == 422
    r = client.post("/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert client.post("/recommend", json={"history": [item], "kk": 3}).status_code == 422
    assert client.post("/recommend", json={"history": [item], "k": "ten"}).status_code == 422
    assert client.post("/recommend", json={"history": [1.5]}).status_code == 422
    assert client.post("/recommend", json={"history": [item], "year_min": 10**30}).status_code == 422
    r = client.post("/recommend", content=b"x", headers={"content-length": "abc"})
    assert r.status_code in (400, 422)
    assert client.post("/sessions/bad id!/events", json={"events": [{"item_id": item}]}).status_code in (
        404,
        422,
    )
    assert client.get("/items", params={"limit": 0}).status_code == 422


def test_no_matches_is_an_empty_list(client: TestClient, world: Interactions) -> None:
    item = world.items.external[0]
    r = client.post("/recommend", json={"history": [item], "year_min": 2100})
    assert r.status_code == 200 and r.json()["items"] == []
