"""POST /recommend: users, anonymous histories, filters and explanations on the synthetic world."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import torch
from fastapi.testclient import TestClient

from playnext.artifact import Artifact
from playnext.data.interactions import Interactions
from playnext.models.ease import EASE, EASEConfig
from playnext.models.popular import Popular


def test_user_recommendations_are_ranked_unseen_and_explained(
    client: TestClient, artifact: Artifact, world: Interactions
) -> None:
    user = world.users.external[0]
    r = client.post("/recommend", json={"user_id": user, "k": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    items = body["items"]
    assert body["model"] == "ease" and len(items) == 10
    assert [it["rank"] for it in items] == list(range(1, 11))
    scores = [it["score"] for it in items]
    assert scores == sorted(scores, reverse=True)
    seen = set(artifact.history_titles(user))
    hist_ids = set(world.items.to_external(artifact.histories[0]))
    assert not {it["item_id"] for it in items} & hist_ids
    for it in items:
        assert it["title"] and it["kind"] in ("movie", "music", "game")
        e = it["explanation"]
        assert e["method"] == "item-item"
        assert e["because"] and {b["title"] for b in e["because"]} <= seen
        assert e["because"][0]["weight"] > 0 and e["text"].startswith("Because you liked")


def test_explain_false_skips_reasons_only(client: TestClient, world: Interactions) -> None:
    body = {"user_id": world.users.external[3], "k": 10}
    full = client.post("/recommend", json=body).json()["items"]
    bare = client.post("/recommend", json={**body, "explain": False}).json()["items"]
    assert all(it["explanation"] is None for it in bare)
    assert all(it["explanation"] is not None for it in full)
    assert [(it["item_id"], it["score"]) for it in bare] == [(it["item_id"], it["score"]) for it in full]


def test_same_answer_as_artifact_recommend(
    client: TestClient, artifact: Artifact, world: Interactions
) -> None:
    user = world.users.external[5]
    expected = [r["item_id"] for r in artifact.recommend(user=user, k=10)]
    got = client.post("/recommend", json={"user_id": user, "k": 10}).json()["items"]
    assert [it["item_id"] for it in got] == expected


def test_anonymous_history_finds_the_sequel(client: TestClient, sequel: tuple[str, str]) -> None:
    first, second = sequel
    r = client.post("/recommend", json={"history": [first], "k": 3})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert second in [it["item_id"] for it in items]
    top = next(it for it in items if it["item_id"] == second)
    assert top["explanation"]["because"][0]["item_id"] == first


def test_filters(client: TestClient, world: Interactions) -> None:
    user = world.users.external[1]
    base = {"user_id": user, "k": 20}
    movies = client.post("/recommend", json={**base, "kind": "movie"}).json()["items"]
    assert movies and all(it["kind"] == "movie" for it in movies)
    two = client.post("/recommend", json={**base, "kind": ["movie", "game"]}).json()["items"]
    assert {it["kind"] for it in two} <= {"movie", "game"}
    genre = movies[0]["genres"][0]
    g = client.post("/recommend", json={**base, "genres": [genre]}).json()["items"]
    assert g and all(genre in it["genres"] for it in g)
    y = client.post("/recommend", json={**base, "year_min": 2000, "year_max": 2010}).json()["items"]
    assert y and all(2000 <= it["year"] <= 2010 for it in y)
    full = [it["item_id"] for it in client.post("/recommend", json=base).json()["items"]]
    ex = client.post("/recommend", json={**base, "exclude_items": full[:3]}).json()["items"]
    assert not set(full[:3]) & {it["item_id"] for it in ex}
    only = client.post("/recommend", json={**base, "only_items": full[5:8]}).json()["items"]
    assert [it["item_id"] for it in only] == full[5:8]
    none = client.post("/recommend", json={**base, "only_items": []}).json()["items"]
    assert none == []


def test_exclude_seen_false_can_return_history(
    make_client: Callable[..., TestClient], sequel: tuple[str, str]
) -> None:
    first, _ = sequel
    client = make_client(max_k=1000)
    r = client.post("/recommend", json={"history": [first], "k": 600, "exclude_seen": False})
    assert first in [it["item_id"] for it in r.json()["items"]]


def test_empty_history_is_popularity(client: TestClient, world: Interactions) -> None:
    items = client.post("/recommend", json={"history": [], "k": 5}).json()["items"]
    top = int(np.argmax(world.item_counts()))
    assert items[0]["item_id"] == world.items.external[top]
    assert items[0]["explanation"]["method"] == "popularity"


def test_leave_one_out_explanations_agree_with_item_item(
    make_client: Callable[..., TestClient], client: TestClient, world: Interactions
) -> None:
    """For a linear item-item model, leaving one item out drops the score by exactly its weight."""
    loo = make_client()
    engine = loo.app.state.holder.engine  # type: ignore[attr-defined]
    engine.explainer.item_item = None  # force the generic path
    hist = world.items.to_external(world.sequences()[3][:6])
    a = client.post("/recommend", json={"history": hist, "k": 5}).json()["items"]
    b = loo.post("/recommend", json={"history": hist, "k": 5}).json()["items"]
    assert [x["item_id"] for x in a] == [x["item_id"] for x in b]
    for x, y in zip(a, b, strict=True):
        assert y["explanation"]["method"] == "leave-one-out"
        assert x["explanation"]["because"][0]["item_id"] == y["explanation"]["because"][0]["item_id"]
        assert abs(x["explanation"]["because"][0]["weight"] - y["explanation"]["because"][0]["weight"]) < 1e-4


def test_model_without_item_weights_falls_back_to_text(
    make_client: Callable[..., TestClient], world: Interactions
) -> None:
    art = Artifact.from_data(Popular().fit(world), world, {})
    c = make_client(art)
    hist = world.items.to_external(world.sequences()[0][:3])
    items = c.post("/recommend", json={"history": hist, "k": 5}).json()["items"]
    assert items and all(it["explanation"]["method"] in ("text-similarity", "model") for it in items)
    assert any(it["explanation"]["because"] for it in items)


def test_numeric_ids_as_numbers_or_strings(make_client: Callable[..., TestClient]) -> None:
    raw = pl.DataFrame(
        {
            "user": [1, 1, 2, 2, 3, 3, 4],
            "item": [10, 20, 10, 20, 10, 30, 20],
            "timestamp": [1, 2, 1, 2, 1, 2, 1],
        }
    )
    meta = pl.DataFrame({"item_id": ["10", "20", "30"], "title": ["Ten", "Twenty", "Thirty"]})
    data = Interactions.from_frame(raw, meta=meta)
    c = make_client(Artifact.from_data(EASE(EASEConfig(l2=1.0)).fit(data), data, {}))
    a = c.post("/recommend", json={"history": [10], "k": 2}).json()
    b = c.post("/recommend", json={"history": ["10"], "k": 2}).json()
    assert a == b and a["items"][0]["item_id"] == "20"
    assert c.post("/recommend", json={"user_id": 1, "k": 1}).status_code == 200


def test_model_runs_on_torch_threads_setting_in_the_request_thread(
    artifact: Artifact, tmp_path: Path
) -> None:
    """The count is per thread (OpenMP): it must be set in the thread that runs the model."""
    from playnext.serve.engine import Engine, Query
    from playnext.serve.settings import Settings
    from playnext.state import StateStore

    engine = Engine(artifact, Settings(torch_threads=1, text_encoder="none"), StateStore.open(tmp_path))
    seen: list[int] = []

    def request() -> None:
        engine.recommend(Query(user_id=artifact.users.external[0]))
        seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    worker = threading.Thread(target=request)
    worker.start()
    worker.join()
    assert seen == [1]
    assert torch.get_num_threads() == before  # this thread's setting is untouched
