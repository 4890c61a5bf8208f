"""What a client may send, and what it may read, against a real server.

Bad JSON values were 500s (NaN, Infinity, a lone surrogate: "Out of range float values are not
JSON compliant", or a UnicodeEncodeError while rendering the 422) and lax types were taken
(`"k": true` as 1, `"item_id": false` as the cold item "0") (issue #30, fault 6 and 9); DELETE
/sessions/{id} needed no token although it erases the session's events from the retraining log;
/health and 503 bodies showed absolute file paths to anyone (fault 9).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from playnext.data.interactions import Interactions

TOKEN = "fault-token"  # tests/faults/conftest.py's
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _strict(text: str) -> Any:
    def refuse(c: str) -> None:
        raise AssertionError(f"{c} in an answer: not JSON")

    return json.loads(text, parse_constant=refuse)


def test_bad_values_and_lax_types_are_422(
    serve: Callable[..., Any], model_dirs: dict[str, Path], fault_world: Interactions
) -> None:
    server = serve("--model-dir", model_dirs["ease"])
    user = str(fault_world.users.external[0])
    item = str(fault_world.items.external[0])
    bodies = {
        "/recommend": [
            f'{{"user_id":"{user}","k":NaN}}',
            f'{{"user_id":"{user}","rerank":{{"mmr":{{"lambda":NaN}}}}}}',
            '{"history":["\\ud800"]}',
            f'{{"user_id":"{user}","k":true}}',
            f'{{"user_id":"{user}","k":-Infinity}}',
            f'{{"user_id":"{user}","k":1e999}}',
            f'{{"history":["{item}"],"year_min":false}}',
        ],
        "/sessions/edge/events": [
            f'{{"events":[{{"item_id":"{item}","value":Infinity}}]}}',
            '{"events":[{"item_id":false}]}',
            f'{{"events":[{{"item_id":"{item}","\\udfff":1}}]}}',
        ],
        "/search": ['{"query":"a \\ud83d space adventure"}'],
    }
    for path, texts in bodies.items():
        for text in texts:
            r = httpx.post(
                server.url + path,
                content=text.encode(),
                headers={**AUTH, "content-type": "application/json"},
                timeout=30,
            )
            assert r.status_code == 422, (path, text, r.status_code, r.text)
            assert _strict(r.text)["detail"], r.text
    assert server.get("/sessions/edge").status_code == 404  # nothing was written
    assert "Traceback" not in server.log_text()


def test_deletes_need_the_token_and_answers_show_no_paths(
    serve: Callable[..., Any], model_dirs: dict[str, Path], fault_world: Interactions, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    server = serve("--model-dir", model_dirs["ease"], "--state", state)
    item = str(fault_world.items.external[0])
    assert server.post("/sessions/mine/events", json={"events": [{"item_id": item}]}).status_code == 200
    assert httpx.delete(server.url + "/sessions/mine", timeout=10).status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert httpx.delete(server.url + "/sessions/mine", headers=bad, timeout=10).status_code == 403
    assert server.get("/sessions/mine").status_code == 200  # still there, events and all
    assert httpx.delete(server.url + "/sessions/mine", headers=AUTH, timeout=10).status_code == 204
    assert server.get("/sessions/mine").status_code == 404

    anyone = server.get("/health").json()
    assert str(tmp_path) not in json.dumps(anyone) and str(model_dirs["ease"]) not in json.dumps(anyone)
    assert anyone["store"] == "sqlite" and anyone["serving"]["path"] == "model"
    operator = server.get("/health", headers=AUTH).json()
    assert operator["store"] == f"sqlite {state / 'state.db'}"
    assert operator["serving"]["path"] == str(model_dirs["ease"])
    for f in state.glob("state.db*"):  # a 503 says why, not where
        f.unlink()
    r = server.post("/sessions/x/events", json={"events": [{"item_id": item}]})
    assert r.status_code == 503 and "deleted" in r.json()["detail"] and str(tmp_path) not in r.text
    r = server.get("/health")
    assert r.status_code == 503 and "deleted" in r.json()["status"] and str(tmp_path) not in r.text
