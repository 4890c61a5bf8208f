"""Durable serving state and model swaps: restarts, several workers, published models."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from playnext.artifact import Artifact, current_model, publish
from playnext.data.interactions import Interactions
from playnext.models.popular import Popular, PopularConfig
from playnext.serve import Settings, create_app
from playnext.state import StateError

TOKEN = "swap-token"


def _settings(state: str | None = None, **kw: object) -> Settings:
    base: dict[str, object] = {
        "text_encoder": "hashing",
        "token": TOKEN,
        "cache_dir": None,
        "state": state,
        "swap_poll_seconds": 0,  # tests call poll() themselves instead of sleeping
        "cold_poll_seconds": 0,
    }
    base.update(kw)
    return Settings.model_validate(base)


@pytest.fixture(scope="module")
def model_dirs(
    artifact: Artifact, world: Interactions, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    ease = artifact.save(root / "ease")
    pop = Artifact.from_data(Popular(PopularConfig()).fit(world), world, {"model": "popular"}).save(
        root / "pop"
    )
    broken = root / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("{not json")
    return {"ease": ease, "pop": pop, "broken": broken}


@pytest.fixture
def clients() -> Iterator[list[TestClient]]:
    opened: list[TestClient] = []
    yield opened
    for c in opened:
        c.__exit__(None, None, None)


def _open(opened: list[TestClient], source: object, settings: Settings) -> TestClient:
    c = TestClient(create_app(source, settings))  # type: ignore[arg-type]
    c.__enter__()
    opened.append(c)
    return c


def test_sessions_and_cold_items_survive_a_restart(
    model_dirs: dict[str, Path], tmp_path: Path, sequel: tuple[str, str], clients: list[TestClient]
) -> None:
    first, second = sequel
    state = str(tmp_path / "state")
    a = _open(clients, model_dirs["ease"], _settings(state))
    r = a.post(
        "/sessions/s1/events",
        json={"events": [{"item_id": first, "event": "play", "value": 0.9, "timestamp": 1700000000}]},
    )
    assert r.status_code == 200
    added = a.post(
        "/items",
        json={"item_id": "brand-new", "title": "A brand new film", "kind": "movie"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert added.status_code == 201, added.text
    recs_before = a.post("/recommend", json={"session_id": "s1", "k": 5, "explain": False}).json()
    a.__exit__(None, None, None)
    clients.remove(a)
    b = _open(clients, model_dirs["ease"], _settings(state))  # a new process on the same state
    s = b.get("/sessions/s1").json()
    assert s["events"] == [
        {
            "item_id": first,
            "title": s["events"][0]["title"],
            "event": "play",
            "value": 0.9,
            "timestamp": 1700000000.0,
        }
    ]
    assert b.get("/items/brand-new").json()["cold_start"] is True
    assert b.post("/recommend", json={"session_id": "s1", "k": 5, "explain": False}).json() == recs_before
    assert second in [i["item_id"] for i in recs_before["items"]]


def test_two_workers_share_one_store(
    model_dirs: dict[str, Path], store_where: str, clients: list[TestClient], world: Interactions
) -> None:
    """Two apps on one store stand for two worker processes: each sees the other's writes at once."""
    w1 = _open(clients, model_dirs["ease"], _settings(store_where))
    w2 = _open(clients, model_dirs["ease"], _settings(store_where))
    items = world.items.external.to_list()
    user = world.users.external[0]
    assert (
        w1.post("/sessions/x/events", json={"user_id": user, "events": [{"item_id": items[3]}]}).status_code
        == 200
    )
    assert (
        w2.post("/sessions/x/events", json={"events": [{"item_id": items[4], "event": "skip"}]}).status_code
        == 200
    )
    s = w1.get("/sessions/x").json()
    assert [e["item_id"] for e in s["events"]] == [items[3], items[4]] and s["user_id"] == user
    new = {"item_id": "cold-1", "title": "Moon Harbour Songs", "kind": "music", "genres": ["folk"]}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert w1.post("/items", json=new, headers=auth).status_code == 201
    # the other worker finds it on first mention, and refuses a duplicate committed elsewhere
    assert w2.post("/sessions/y/events", json={"events": [{"item_id": "cold-1"}]}).status_code == 200
    assert w2.post("/items", json=new, headers=auth).status_code == 409
    assert w2.get("/health").json()["sessions"] == 2


def test_event_bad_input(model_dirs: dict[str, Path], tmp_path: Path, clients: list[TestClient]) -> None:
    c = _open(clients, model_dirs["ease"], _settings(str(tmp_path / "s")))
    r = c.post("/sessions/a/events", json={"user_id": "nobody-9", "events": [{"item_id": "x"}]})
    assert r.status_code == 422
    item = c.get("/items").json()["items"][0]["item_id"]
    r = c.post("/sessions/a/events", json={"user_id": "nobody-9", "events": [{"item_id": item}]})
    assert r.status_code == 422 and "nobody-9" in r.json()["detail"]
    r = c.post("/sessions/a/events", json={"events": [{"item_id": item, "timestamp": -5}]})
    assert r.status_code == 422
    assert c.get("/sessions/a").status_code == 404  # nothing was written


def test_store_failure_is_a_503_with_the_reason(
    model_dirs: dict[str, Path], tmp_path: Path, clients: list[TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    c = _open(clients, model_dirs["ease"], _settings(str(tmp_path / "s")))
    item = c.get("/items").json()["items"][0]["item_id"]
    holder = c.app.state.holder  # type: ignore[attr-defined]

    def down(*a: object, **k: object) -> None:
        raise StateError("state store db: write failed: database is locked")

    monkeypatch.setattr(holder.engine.store, "append", down)
    monkeypatch.setattr(holder.engine.store, "check", down)  # real files: tests/faults/test_store_*
    r = c.post("/sessions/a/events", json={"events": [{"item_id": item}]})
    assert r.status_code == 503 and "locked" in r.json()["detail"]
    h = c.get("/health")
    assert h.status_code == 503 and "locked" in h.json()["status"]


def test_admin_swap_refuses_a_broken_model_and_other_workers_follow(
    model_dirs: dict[str, Path], tmp_path: Path, clients: list[TestClient]
) -> None:
    state = str(tmp_path / "state")
    w1 = _open(clients, model_dirs["ease"], _settings(state))
    w2 = _open(clients, model_dirs["ease"], _settings(state))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert w1.post("/admin/model", json={"model_dir": str(model_dirs["pop"])}).status_code == 401
    r = w1.post("/admin/model", json={"model_dir": str(model_dirs["broken"])}, headers=auth)
    assert r.status_code == 422 and "refused" in r.json()["detail"]
    h = w1.get("/health").json()
    assert h["model"] == "ease" and "broken" in h["serving"]["last_error"]
    assert w1.post("/recommend", json={"history": [h_item(w1)], "k": 3}).status_code == 200
    r = w1.post("/admin/model", json={"model_dir": str(model_dirs["pop"])}, headers=auth)
    assert r.status_code == 200 and r.json()["model"] == "popular"
    assert w1.get("/health").json()["serving"]["swaps"] == 1
    assert w2.get("/health").json()["model"] == "ease"
    assert w2.app.state.holder.poll()  # type: ignore[attr-defined]
    assert w2.get("/health").json()["model"] == "popular"
    # a worker (re)started for the same deployment serves what the admin chose
    w3 = _open(clients, model_dirs["ease"], _settings(state))
    assert w3.get("/health").json()["model"] == "popular"


def h_item(c: TestClient) -> str:
    return str(c.get("/items").json()["items"][0]["item_id"])


def test_model_root_swap_keeps_requests_in_flight_on_the_old_model(
    model_dirs: dict[str, Path], tmp_path: Path, clients: list[TestClient]
) -> None:
    root = tmp_path / "root"
    publish(model_dirs["ease"], root, "v1")
    c = _open(clients, None, _settings(model_root=root))
    holder = c.app.state.holder  # type: ignore[attr-defined]
    old = holder.engine  # what a request that started now holds
    assert not holder.poll()
    publish(model_dirs["broken"], root, "v2-broken")
    assert not holder.poll() and holder.engine is old
    assert "v2-broken" in holder.serving.last_error
    publish(model_dirs["pop"], root, "v3")
    assert holder.poll() and holder.engine is not old
    assert current_model(root).name == "v3" and (root / "versions" / "v1").is_dir()
    from playnext.serve.engine import Query

    assert old.recommend(Query(history=[h_item(c)], k=2, explain=False))  # the old one still answers
    gone = weakref.ref(old)
    del old
    assert gone() is None  # freed by reference counting once the last request lets go: no GC pause
    assert c.get("/health").json()["model"] == "popular"
    assert (root / "state" / "state.db").is_file()  # the default store lives in the root


def test_a_model_of_another_catalog_is_refused_on_the_same_store(
    model_dirs: dict[str, Path], tmp_path: Path, clients: list[TestClient]
) -> None:
    """A store's sessions are ids of one catalog: another model's would read them as other items
    (and a retrain would mix the two logs), so it is refused, by a swap and at a start."""
    from playnext.data.synthetic import generate_world

    other_world = generate_world(n_users=60, n_items=120, seed=7)
    other = Artifact.from_data(
        Popular(PopularConfig()).fit(other_world), other_world, {"model": "popular", "dataset": "other"}
    ).save(tmp_path / "other")
    state = str(tmp_path / "state")
    c = _open(clients, model_dirs["ease"], _settings(state))
    r = c.post("/admin/model", json={"model_dir": str(other)}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 422 and "belongs to another catalog" in r.json()["detail"], r.text
    assert c.get("/health").json()["model"] == "ease"
    with pytest.raises(Exception, match="belongs to another catalog"):
        _open(clients, other, _settings(state))
