"""Fuzzing the class of bad values, not its instances: NaN, ±Infinity, 1e999, lone surrogates and
booleans where numbers or strings are expected, anywhere in any JSON body of the OpenAPI spec.

Schemathesis generates a valid body for each operation; hypothesis puts one bad value at one of
its leaves. Each must be a 422 whose body is JSON a strict parser reads (Python's parser accepts
all of them; answering them used to be a 500: "Out of range float values are not JSON
compliant", a UnicodeEncodeError while rendering the 422, or `true` taken as 1).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TOKEN = "test-token"
EXAMPLES = 25
BIG = "__1e999__"  # stands for the literal 1e999 (a float overflow), written into the text after dumps
NON_FINITE = [float("nan"), float("inf"), float("-inf"), BIG]
SURROGATES = ["\ud800", "\udfff", "a\udc00b"]


def _leaves(v: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(v, dict):
        return [leaf for k, x in v.items() for leaf in _leaves(x, (*path, k))]
    if isinstance(v, list):
        return [leaf for i, x in enumerate(v) for leaf in _leaves(x, (*path, i))]
    return [(path, v)]


def _put(body: Any, path: tuple[Any, ...], value: Any) -> None:
    for p in path[:-1]:
        body = body[p]
    body[path[-1]] = value


def _strict_loads(text: str) -> Any:
    def refuse(c: str) -> None:
        raise AssertionError(f"the answer holds {c}: not JSON")

    return json.loads(text, parse_constant=refuse)


def test_bad_values_anywhere_are_a_422(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures: list[str] = []
    kinds_sent: list[str] = []
    n_bodies = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if op.body is None or not list(op.body):
            continue
        n_bodies += 1

        @given(case=op.as_strategy(), data=st.data())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any, data: st.DataObject) -> None:
            body = case.body if isinstance(case.body, dict | list) else {}
            leaves = _leaves(body)
            if not leaves or not leaves[0][0]:  # an empty body: the bad value as a field of its own
                body, leaves = {"k": 1}, [(("k",), 1)]
            path, old = data.draw(st.sampled_from(leaves), label="leaf")
            kinds = ["non-finite", "surrogate", "surrogate key"]
            if not isinstance(old, bool):  # a boolean where a number or a string is expected
                kinds.append("boolean")
            kind = data.draw(st.sampled_from(kinds), label="kind")
            if kind == "non-finite":
                _put(body, path, data.draw(st.sampled_from(NON_FINITE)))
            elif kind == "surrogate":
                _put(body, path, data.draw(st.sampled_from(SURROGATES)))
            elif kind == "boolean":
                _put(body, path, data.draw(st.booleans()))
            else:
                parent = body
                for p in path[:-1]:
                    parent = parent[p]
                target = parent if isinstance(parent, dict) else body
                target["\ud800"] = 1
            text = json.dumps(body).replace(f'"{BIG}"', "1e999")  # NaN, Infinity and \ud800 as such
            r = client.request(
                case.method,
                case.formatted_path,
                params=case.query,
                content=text.encode(),
                headers={"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
            )
            kinds_sent.append(kind)
            where = f"{case.method} {case.formatted_path} {kind} at {path}: {text[:200]}"
            try:
                answer = _strict_loads(r.text)
            except (AssertionError, ValueError) as e:
                failures.append(f"{where}: {r.status_code}, unreadable answer ({e})")
                raise AssertionError from None
            if r.status_code != 422:
                failures.append(f"{where}: {r.status_code} {r.text[:200]}")
            assert r.status_code == 422 and answer["detail"]

        with contextlib.suppress(AssertionError):  # recorded above; keep fuzzing the other operations
            fuzz()
    assert n_bodies >= 5  # recommend, search, session events, items, admin model
    assert len(kinds_sent) >= EXAMPLES * n_bodies // 2  # the fuzzing really ran
    assert set(kinds_sent) == {"non-finite", "surrogate", "surrogate key", "boolean"}
    assert not failures, "\n".join(failures[:20])


def test_the_named_cases(client: TestClient) -> None:
    """The issue's four bodies, and booleans for numbers and ids: each a 422 naming the field."""
    headers = {"content-type": "application/json"}
    cases = {
        '{"user_id":"u0","k":NaN}': ["body", "k"],
        '{"user_id":"u0","rerank":{"mmr":{"lambda":NaN}}}': ["body", "rerank", "mmr", "lambda"],
        '{"history":["\\ud800"]}': ["body", "history", 0],
        '{"user_id":"u0","k":1e999}': ["body", "k"],
        '{"user_id":"u0","k":true}': ["body", "k"],
        '{"user_id":"u0","rerank":{"mmr":{"lambda":true}}}': ["body", "rerank", "mmr", "lambda"],
    }
    for text, loc in cases.items():
        r = client.post("/recommend", content=text.encode(), headers=headers)
        assert r.status_code == 422, (text, r.text)
        assert _strict_loads(r.text)["detail"][0]["loc"] == loc, (text, r.text)
    for text in ('{"events":[{"item_id":"1","value":Infinity}]}', '{"events":[{"item_id":false}]}'):
        r = client.post("/sessions/s/events", content=text.encode(), headers=headers)
        assert r.status_code == 422 and _strict_loads(r.text)["detail"][0]["loc"][:3] == ["body", "events", 0]
    assert client.get("/sessions/s").status_code == 404  # nothing was written
    # what the edge refuses without JSON's help still gets a 4xx, never a 500
    odd = [b'{"k": 1' + b"0" * 5000 + b"}", b"[" * 5000 + b"]" * 5000, b'{"history": ["\xed\xa0\x80"]}']
    for body in odd:
        assert client.post("/recommend", content=body, headers=headers).status_code == 422
    r = client.post("/recommend", content=b'{"user_id":"u0","k":NaN}')  # no content-type: still JSON
    assert r.status_code == 422
