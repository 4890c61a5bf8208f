"""Live sessions: events appended now change the next recommendation, without retraining."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from playnext.data.interactions import Interactions


def test_events_change_the_next_recommendation(client: TestClient, sequel: tuple[str, str]) -> None:
    first, second = sequel
    r = client.post("/sessions/abc/events", json={"events": [{"item_id": first, "event": "play"}]})
    assert r.status_code == 200, r.text
    assert r.json()["length"] == 1 and r.json()["events"][0]["event"] == "play"
    recs = client.post("/recommend", json={"session_id": "abc", "k": 3}).json()["items"]
    assert second in [it["item_id"] for it in recs]
    # watching the sequel too: it is no longer recommended (seen), and the session grew
    client.post("/sessions/abc/events", json={"events": [{"item_id": second}]})
    recs2 = client.post("/recommend", json={"session_id": "abc", "k": 3}).json()["items"]
    assert second not in [it["item_id"] for it in recs2]
    s = client.get("/sessions/abc").json()
    assert [e["item_id"] for e in s["events"]] == [first, second]


def test_session_combines_with_a_known_user(client: TestClient, world: Interactions) -> None:
    user = world.users.external[2]
    seen = set(world.items.to_external(world.sequences()[2]))
    new = next(i for i in world.items.external.to_list() if i not in seen)
    alone = client.post("/recommend", json={"user_id": user, "k": 10}).json()["items"]
    client.post("/sessions/u2/events", json={"events": [{"item_id": new}]})
    both = client.post("/recommend", json={"user_id": user, "session_id": "u2", "k": 10}).json()["items"]
    assert [x["score"] for x in alone] != [x["score"] for x in both]
    assert new not in [x["item_id"] for x in both]


def test_sessions_are_bounded(
    make_client: Callable[..., TestClient], world: Interactions, auth: dict[str, str]
) -> None:
    c = make_client(max_sessions=2, max_session_events=3)
    items = world.items.external.to_list()
    for sid in ("a", "b"):
        c.post(f"/sessions/{sid}/events", json={"events": [{"item_id": items[0]}]})
    c.post("/sessions/a/events", json={"events": [{"item_id": items[2]}]})  # b: least recently written
    c.post("/sessions/c/events", json={"events": [{"item_id": items[1]}]})
    assert c.get("/sessions/b").status_code == 404
    assert c.get("/sessions/a").status_code == 200
    r = c.post("/sessions/a/events", json={"events": [{"item_id": i} for i in items[1:6]]})
    assert r.json()["length"] == 3 and [e["item_id"] for e in r.json()["events"]] == items[3:6]
    assert c.get("/sessions/b").status_code == 404  # reading never resurrects an evicted session
    # erasing a session erases its events from the retraining log: it needs the token
    assert c.delete("/sessions/a").status_code == 401
    assert c.delete("/sessions/a", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert c.get("/sessions/a").status_code == 200
    assert c.delete("/sessions/a", headers=auth).status_code == 204
    assert c.delete("/sessions/a", headers=auth).status_code == 404
    r = c.post("/sessions/d/events", json={"events": [{"item_id": "unknown-9"}]})
    assert r.status_code == 422 and "unknown-9" in r.json()["detail"]
    assert c.get("/sessions/d").status_code == 404  # a rejected request creates nothing
