"""Known users (GET /users, GET /users/{id}/history), `remove_from_history`, and skips as a
session's negatives on a model with no skip event type (the untyped EASE fixture)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from playnext.artifact import Artifact
from playnext.data.interactions import Interactions


def _history(artifact: Artifact, user: str) -> list[str]:
    row = artifact.users.lookup[user]
    return artifact.items.to_external(artifact.histories[row])


def test_users_are_listed_and_found_by_id(client: TestClient, world: Interactions) -> None:
    page = client.get("/users", params={"limit": 5}).json()
    assert page["total"] == world.n_users and page["limit"] == 5
    first = world.users.external[:5].to_list()
    assert [u["user_id"] for u in page["users"]] == first
    lengths = np.diff(world.sequences().indptr)[:5].tolist()
    assert [u["n_events"] for u in page["users"]] == lengths
    found = client.get("/users", params={"query": "U1", "limit": 100}).json()
    ids = [u["user_id"] for u in found["users"]]
    assert ids[0] == "u1" and all(u.startswith("u1") for u in ids)  # exact, then prefix; any case
    assert found["total"] == sum("u1" in u for u in world.users.external.to_list())
    assert client.get("/users", params={"query": "no such user"}).json() == {
        "total": 0,
        "offset": 0,
        "limit": 20,
        "users": [],
    }


def test_history_is_the_stored_one_oldest_first(client: TestClient, artifact: Artifact) -> None:
    user = artifact.users.external[3]
    full = _history(artifact, user)
    r = client.get(f"/users/{user}/history", params={"limit": 1000})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == user and body["length"] == len(full)
    assert [e["item_id"] for e in body["events"]] == full
    assert body["events"][0]["title"] and body["events"][0]["event"] is None  # untyped log
    last3 = client.get(f"/users/{user}/history", params={"limit": 3}).json()
    assert last3["length"] == len(full) and [e["item_id"] for e in last3["events"]] == full[-3:]


def test_unknown_user_is_a_404_in_one_line(client: TestClient) -> None:
    r = client.get("/users/nobody/history")
    assert r.status_code == 404
    assert r.json()["detail"] == "unknown user id: nobody" and r.json()["unknown"] == ["nobody"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/users/u1/history", {"limit": 0}, "limit"),
        ("/users/u1/history", {"limit": 1001}, "limit"),
        ("/users/u1/history", {"limit": "ten"}, "limit"),
        ("/users", {"limit": 101}, "limit"),
        ("/users", {"offset": -1}, "offset"),
        ("/users", {"query": "x" * 201}, "query"),
    ],
)
def test_bad_paging_is_a_422_naming_the_field(
    client: TestClient, path: str, params: dict[str, str | int], field: str
) -> None:
    r = client.get(path, params=params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", field]


def test_a_removed_pick_leaves_the_history_the_model_reads(client: TestClient, artifact: Artifact) -> None:
    """With `remove_from_history`, a known user is scored as their history without that item
    (EASE reads only the history: the same list as the shortened history sent anonymously)."""
    user = artifact.users.external[3]
    full = _history(artifact, user)
    gone = full[-1]
    ask = {"k": 10, "explain": True}
    before = client.post("/recommend", json={"user_id": user, **ask}).json()["items"]
    after = client.post("/recommend", json={"user_id": user, "remove_from_history": [gone], **ask}).json()
    rest = [h for h in full if h != gone]
    anon = client.post("/recommend", json={"history": rest, **ask}).json()["items"]
    assert [x["item_id"] for x in after["items"]] == [x["item_id"] for x in anon]
    assert [x["item_id"] for x in after["items"]] != [x["item_id"] for x in before]
    reasons = {b["item_id"] for x in after["items"] for b in x["explanation"]["because"]}
    assert gone not in reasons  # no reason cites the removed pick


def test_remove_from_history_names_bad_input(client: TestClient, artifact: Artifact) -> None:
    user = artifact.users.external[0]
    r = client.post("/recommend", json={"user_id": user, "remove_from_history": ["no-such-item"]})
    assert (
        r.status_code == 422
        and r.json()["detail"] == "unknown item id(s) in remove_from_history: no-such-item"
    )
    r = client.post("/recommend", json={"user_id": user, "remove_from_history": "x"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "remove_from_history"]
    r = client.post("/recommend", json={"user_id": user, "remove_from_history": ["a"] * 1001})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "remove_from_history"]


def _recs(client: TestClient, session: str, **extra: object) -> list[str]:
    r = client.post("/recommend", json={"session_id": session, "k": 10, "explain": False, **extra})
    assert r.status_code == 200, r.text
    return [x["item_id"] for x in r.json()["items"]]


def _post(client: TestClient, session: str, *events: dict[str, object]) -> None:
    r = client.post(f"/sessions/{session}/events", json={"events": list(events)})
    assert r.status_code == 200, r.text


def test_a_skip_is_an_implicit_negative_on_a_model_without_skips(
    client: TestClient, world: Interactions
) -> None:
    """The skipped item never comes back in that session, and the model does not read it as a
    pick: the rest of the list is the one without the skip."""
    picks = world.items.external[:2].to_list()
    _post(client, "plain", *({"item_id": i, "event": "like"} for i in picks))
    top = _recs(client, "plain")
    _post(client, "skips", *({"item_id": i, "event": "like"} for i in picks))
    _post(client, "skips", {"item_id": top[0], "event": "skip", "value": 0.0})
    after = _recs(client, "skips")
    assert top[0] not in after and after[:9] == top[1:]
    assert top[0] not in _recs(client, "skips", exclude_seen=False, k=50)
    assert top[0] not in _recs(client, "skips", k=50)  # nor further down a longer list
    # a later like takes the skip back: a pick again (so excluded as seen, and read as one)
    _post(client, "skips", {"item_id": top[0], "event": "like"})
    both = [*picks, top[0]]
    again = client.post("/recommend", json={"history": both, "k": 10, "explain": False}).json()["items"]
    assert _recs(client, "skips") == [x["item_id"] for x in again]


def test_removing_a_skip_lets_the_item_come_back(client: TestClient, world: Interactions) -> None:
    picks = world.items.external[:2].to_list()
    _post(client, "s", *({"item_id": i, "event": "like"} for i in picks))
    top = _recs(client, "s")
    _post(client, "s", {"item_id": top[0], "event": "skip"})
    assert top[0] not in _recs(client, "s")
    assert _recs(client, "s", remove_from_history=[top[0]]) == top
    # and removing a session pick drops it from what the model reads
    one = client.post("/recommend", json={"history": picks[1:], "k": 10, "explain": False}).json()
    assert _recs(client, "s", remove_from_history=[picks[0], top[0]]) == [x["item_id"] for x in one["items"]]
