"""Serving a model trained with typed events: session events reach its input, and an event type
it was not trained with (or a value outside its type's range) is refused with a 422."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
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


@pytest.fixture(scope="module")
def no_skip_artifact(typed_world: Interactions) -> Artifact:
    """A model trained with like, watch and dislike events, but no skip type."""
    frame = typed_world.frame.with_columns(pl.col("event").replace("skip", "dislike"))
    world = Interactions(frame, typed_world.users, typed_world.items, typed_world.meta, typed_world.name)
    cfg = SASRecConfig(dim=16, max_len=20, epochs=1, actions=True, targets="positive", verbose=False)
    model = SASRec(cfg).fit(world)
    assert model.event_types_ == ("dislike", "like", "watch")
    return Artifact.from_data(model, world, {"dataset": "synthetic", "model": "sasrec"})


def _top(c: TestClient, session: str, **extra: object) -> list[tuple[str, float]]:
    r = c.post("/recommend", json={"session_id": session, "k": 10, "explain": False, **extra})
    assert r.status_code == 200, r.text
    return [(x["item_id"], x["score"]) for x in r.json()["items"]]


def test_a_model_without_skips_takes_a_skip_as_an_implicit_negative(
    make_client: Callable[..., TestClient], no_skip_artifact: Artifact, typed_world: Interactions
) -> None:
    """A skip is accepted, the item leaves that session's lists, and the model does not read it:
    every other score is the one without the skip (a typed model reads an untyped event as a pick)."""
    c = make_client(no_skip_artifact)
    watched = [{"item_id": i, "event": "watch", "value": 1.0} for i in typed_world.items.external[:3]]
    for s in ("plain", "skipped"):
        assert c.post(f"/sessions/{s}/events", json={"events": watched}).status_code == 200
    top = _top(c, "plain")
    r = c.post("/sessions/skipped/events", json={"events": [{"item_id": top[0][0], "event": "skip"}]})
    assert r.status_code == 200 and r.json()["events"][-1]["event"] == "skip"
    assert _top(c, "skipped")[:9] == top[1:]
    bad = c.post(
        "/sessions/skipped/events", json={"events": [{"item_id": top[1][0], "event": "skip", "value": 2}]}
    )
    assert bad.status_code == 422 and "skip" in bad.json()["detail"]  # its value range still holds
    r = c.post("/sessions/skipped/events", json={"events": [{"item_id": top[1][0], "event": "purchase"}]})
    assert r.status_code == 422 and r.json()["known_event_types"] == ["dislike", "like", "watch"]


def test_a_skip_never_comes_back_in_its_session_even_with_repeats(
    make_client: Callable[..., TestClient], typed_artifact: Artifact, typed_world: Interactions
) -> None:
    """A model trained with skips reads them, and the item stays out with exclude_seen off too."""
    c = make_client(typed_artifact)
    watched = [{"item_id": i, "event": "watch", "value": 1.0} for i in typed_world.items.external[:3]]
    assert c.post("/sessions/r/events", json={"events": watched}).status_code == 200
    top = _top(c, "r", exclude_seen=False, k=50)
    skip = {"item_id": top[0][0], "event": "skip", "value": 0.1}
    assert c.post("/sessions/r/events", json={"events": [skip]}).status_code == 200
    assert top[0][0] not in [i for i, _ in _top(c, "r", exclude_seen=False, k=50)]
