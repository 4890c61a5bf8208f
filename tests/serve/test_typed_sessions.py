"""Serving a model trained with typed events: session events reach its input, and an event type
it was not trained with (or a value outside its type's range) is refused with a 422."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from playnext.artifact import Artifact
from playnext.data.interactions import Interactions
from playnext.data.synthetic import generate_world
from playnext.models.sasrec import SASRec, SASRecConfig


@pytest.fixture(scope="module")
def typed_world() -> Interactions:
    return generate_world(n_users=150, n_items=300, seed=0, typed_events=True)


@pytest.fixture(scope="module")
def typed_artifact(typed_world: Interactions, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    cfg = SASRecConfig(dim=16, max_len=20, epochs=1, actions=True, targets="positive", verbose=False)
    model = SASRec(cfg).fit(typed_world)
    folder = tmp_path_factory.mktemp("typed") / "m"
    Artifact.from_data(model, typed_world, {"dataset": "synthetic", "model": "sasrec"}).save(folder)
    return Artifact.load(folder)  # through the folder: event types and typed histories saved


def test_artifact_keeps_event_types_and_typed_histories(typed_artifact: Artifact) -> None:
    model = typed_artifact.model
    assert isinstance(model, SASRec) and model.event_types_ == ("like", "skip", "watch")
    assert typed_artifact.histories.typed and typed_artifact.histories.event_names == (
        "like",
        "skip",
        "watch",
    )


def test_unknown_event_type_is_a_422_listing_the_known_ones(
    make_client: Callable[..., TestClient], typed_artifact: Artifact, typed_world: Interactions
) -> None:
    c = make_client(typed_artifact)
    item = typed_world.items.external[0]
    r = c.post("/sessions/s1/events", json={"events": [{"item_id": item, "event": "purchase"}]})
    assert r.status_code == 422, r.text
    body = r.json()
    assert "purchase" in body["detail"] and "like, skip, watch" in body["detail"]
    assert body["known_event_types"] == ["like", "skip", "watch"]
    r = c.post("/sessions/s1/events", json={"events": [{"item_id": item, "event": "watch", "value": 1.7}]})
    assert r.status_code == 422 and "watch" in r.json()["detail"]
    assert c.get("/sessions/s1").status_code == 404  # nothing of a refused request was committed


def test_session_events_reach_the_model(
    make_client: Callable[..., TestClient], typed_artifact: Artifact, typed_world: Interactions
) -> None:
    """The same items as a skip or as a watch give different scores: the event is an input."""
    c = make_client(typed_artifact)
    items = typed_world.items.external[:3].to_list()

    def scores(session: str, last_event: str) -> list[float]:
        events = [{"item_id": i, "event": "watch", "value": 1.0} for i in items[:-1]]
        events.append({"item_id": items[-1], "event": last_event, "value": 0.0})
        assert c.post(f"/sessions/{session}/events", json={"events": events}).status_code == 200
        recs = c.post("/recommend", json={"session_id": session, "k": 20, "explain": False}).json()["items"]
        return [x["score"] for x in recs]

    assert scores("a", "skip") != scores("b", "watch")
    user = typed_world.users.external[0]
    r = c.post("/recommend", json={"user_id": user, "session_id": "a", "k": 5})
    assert r.status_code == 200 and len(r.json()["items"]) == 5


def test_untyped_models_still_log_any_event(client: TestClient, world: Interactions, tmp_path: Path) -> None:
    item = world.items.external[0]
    r = client.post(
        "/sessions/x/events", json={"events": [{"item_id": item, "event": "anything", "value": 9}]}
    )
    assert r.status_code == 200


def test_health_lists_the_event_types_and_their_ranges(
    make_client: Callable[..., TestClient], typed_artifact: Artifact, client: TestClient
) -> None:
    """What a client may send: the model's types with their value ranges; none for an untyped model."""
    types = {t["name"]: t for t in make_client(typed_artifact).get("/health").json()["event_types"]}
    assert list(types) == ["like", "skip", "watch"]
    assert (types["watch"]["low"], types["watch"]["high"], types["watch"]["positive_from"]) == (0.0, 1.0, 0.5)
    assert types["skip"]["positive"] is False and types["like"]["positive"] is True
    assert client.get("/health").json()["event_types"] == []
