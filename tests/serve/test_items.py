"""Title search, similar items, and cold-start items added at run time."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
from fastapi.testclient import TestClient

from playnext.artifact import Artifact
from playnext.data.interactions import Interactions


def test_title_search_is_case_insensitive_and_word_order_free(
    client: TestClient, world: Interactions
) -> None:
    title = world.meta.get_column("title")[0]
    r = client.get("/items", params={"query": title.upper()})
    assert r.status_code == 200
    body = r.json()
    assert body["items"][0]["title"] == title and body["total"] >= 1
    words = title.split()
    if len(words) >= 2:
        swapped = " ".join(reversed(words[:2])).lower()
        hits = client.get("/items", params={"query": swapped, "limit": 100}).json()["items"]
        assert title in [h["title"] for h in hits]
    page = client.get("/items", params={"limit": 5, "offset": 5}).json()
    assert page["total"] == world.n_items and len(page["items"]) == 5
    assert client.get("/items", params={"query": "qqqzzzxxx"}).json() == {
        "total": 0,
        "offset": 0,
        "limit": 20,
        "items": [],
    }


def test_similar_items(client: TestClient, sequel: tuple[str, str]) -> None:
    first, second = sequel
    by_model = client.get(f"/items/{first}/similar", params={"k": 5}).json()["items"]
    assert second in [x["item_id"] for x in by_model] and first not in [x["item_id"] for x in by_model]
    assert by_model[0]["explanation"]["method"] == "co-occurrence"
    by_text = client.get(f"/items/{first}/similar", params={"k": 5, "by": "text"}).json()["items"]
    assert len(by_text) == 5 and by_text[0]["explanation"]["method"] == "text-similarity"
    assert first not in [x["item_id"] for x in by_text]


def test_adding_items_needs_the_token(make_client: Callable[..., TestClient], auth: dict[str, str]) -> None:
    c = make_client()
    item = {"item_id": "new-1", "title": "Brand New", "kind": "movie", "genres": ["drama"], "year": 2025}
    assert c.post("/items", json=item).status_code == 401
    assert c.post("/items", json=item, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert c.post("/items", json=item, headers={"Authorization": "Bearer wrøng".encode("latin-1")})  # type: ignore[dict-item].status_code == 403
    assert c.post("/items", json=item, headers=auth).status_code == 201
    assert c.post("/items", json=item, headers=auth).status_code == 409
    locked = make_client(token=None)
    assert locked.post("/items", json=item, headers=auth).status_code == 403


def test_cold_start_item_is_recommended_through_its_text(
    client: TestClient, auth: dict[str, str], artifact: Artifact, world: Interactions
) -> None:
    """A new instalment of a series a user is into gets recommended to them, with no training."""
    user = world.users.external[7]
    before = client.post("/recommend", json={"user_id": user, "k": 5}).json()["items"]
    twin = client.get(f"/items/{before[0]['item_id']}").json()
    new = {
        "item_id": "brand-new-1",
        "title": twin["title"] + " (Remastered)",
        "kind": twin["kind"],
        "genres": twin["genres"],
        "year": 2025,
    }
    r = client.post("/items", json=new, headers=auth)
    assert r.status_code == 201, r.text
    added = r.json()
    assert added["cold_start"] and added["neighbors"][0]["item_id"] == twin["item_id"]
    after = client.post("/recommend", json={"user_id": user, "k": 5}).json()["items"]
    ids = [x["item_id"] for x in after]
    assert "brand-new-1" in ids
    cold = after[ids.index("brand-new-1")]
    assert cold["cold_start"] and cold["explanation"]["method"] == "cold-start"
    # someone with other tastes is not pushed the new item
    other = next(
        u
        for u in world.users.external.to_list()[50:]
        if twin["item_id"]
        not in [x["item_id"] for x in client.post("/recommend", json={"user_id": u, "k": 50}).json()["items"]]
        and twin["item_id"] not in world.items.to_external(artifact.histories[artifact.users.lookup[u]])
    )
    top = [x["item_id"] for x in client.post("/recommend", json={"user_id": other, "k": 5}).json()["items"]]
    assert "brand-new-1" not in top
    # the new item is a full catalog member: searchable, filterable, similar-able, usable in a history
    assert client.get("/items", params={"query": "remastered"}).json()["items"][0]["item_id"] == "brand-new-1"
    assert client.get("/items/brand-new-1/similar", params={"k": 3}).status_code == 200
    recs = client.post("/recommend", json={"history": ["brand-new-1"], "k": 5}).json()["items"]
    assert "brand-new-1" not in [x["item_id"] for x in recs] and len(recs) == 5
    only = client.post("/recommend", json={"user_id": user, "only_items": ["brand-new-1"]}).json()["items"]
    assert [x["item_id"] for x in only] == ["brand-new-1"]


def test_a_content_tower_model_scores_cold_items_itself(
    make_client: Callable[..., TestClient], auth: dict[str, str], world: Interactions
) -> None:
    """With item_features the model ranks a new item from its content, not its neighbours'
    borrowed scores: the served score is the model's own `score_new_items` score."""
    import numpy as np

    from playnext.models.sasrec import SASRec, SASRecConfig

    cfg = SASRecConfig(dim=16, max_len=20, epochs=2, item_features=["genres", "kind", "year", "text"],
                       text_encoder="hashing", verbose=False)  # fmt: skip
    model = SASRec(cfg).fit(world)
    c = make_client(Artifact.from_data(model, world, {"dataset": "synthetic", "model": "sasrec"}))
    new = {"item_id": "fresh-1", "title": "Quiet Harbour", "kind": "movie", "genres": ["drama"], "year": 2026}
    assert c.post("/items", json=new, headers=auth).status_code == 201
    user = world.users.external[3]
    got = c.post("/recommend", json={"user_id": user, "only_items": ["fresh-1"]}).json()["items"]
    assert [x["item_id"] for x in got] == ["fresh-1"] and got[0]["cold_start"]
    meta = world.meta.head(0).vstack(world.meta.head(1).with_columns(
        item_id=pl.lit("fresh-1"), title=pl.lit("Quiet Harbour"), kind=pl.lit("movie"),
        genres=pl.lit(["drama"]), year=pl.lit(2026, dtype=pl.Int32)))  # fmt: skip
    u = world.users.lookup[user]
    own = model.score_new_items(
        np.array([u]), world.sequences().take(np.array([u])), model.content_vectors(meta)
    )
    assert abs(got[0]["score"] - float(own[0, -1])) < 1e-4


def test_cold_items_gain_their_live_event_counts(
    make_client: Callable[..., TestClient], auth: dict[str, str], artifact: Artifact, world: Interactions
) -> None:
    """Two added items with the same text borrow the same score; once people play one of them,
    it gains weight · log(1 + its events) — counted in the shared store, so every worker sees it."""
    import math

    c = make_client(cold_live_weight=0.5, cold_poll_seconds=0.0)
    twin = world.meta.row(0, named=True)
    for item_id in ("cold-a", "cold-b"):
        item = {"item_id": item_id, "title": "Same Film", "kind": twin["kind"], "genres": twin["genres"]}
        assert c.post("/items", json=item, headers=auth).status_code == 201
    ask = {"user_id": world.users.external[5], "only_items": ["cold-a", "cold-b"], "k": 2}
    tied = {x["item_id"]: x["score"] for x in c.post("/recommend", json=ask).json()["items"]}
    assert tied["cold-a"] == tied["cold-b"]
    for s in range(3):
        events = {"events": [{"item_id": "cold-b", "event": "play"}]}
        assert c.post(f"/sessions/s{s}/events", json=events).status_code == 200
    got = {x["item_id"]: x["score"] for x in c.post("/recommend", json=ask).json()["items"]}
    assert abs(got["cold-b"] - got["cold-a"] - 0.5 * math.log(4)) < 1e-4 and got["cold-a"] == tied["cold-a"]
    assert c.get("/health").json()["cold_live_weight"] == 0.5


def test_the_live_weight_defaults_to_the_one_train_cold_chose(
    make_client: Callable[..., TestClient], artifact: Artifact
) -> None:
    chose = {
        **artifact.info,
        "cold": {"live_weights": {"borrowing": {"chosen": 2.0}, "content": {"chosen": 9.0}}},
    }
    art = Artifact(artifact.model, artifact.users, artifact.items, artifact.meta, artifact.histories, chose)
    assert make_client(art).get("/health").json()["cold_live_weight"] == 2.0  # EASE borrows: not `content`'s
    assert make_client(art, cold_live_weight=0.0).get("/health").json()["cold_live_weight"] == 0.0
    assert make_client().get("/health").json()["cold_live_weight"] == 0.0
