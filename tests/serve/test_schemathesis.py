"""Property-based fuzzing of every operation in the OpenAPI spec: no input may cause a 5xx.

Schemathesis generates the requests (valid and invalid) from the spec; hypothesis drives a bounded
number of examples per operation. (Its pytest plugin is not used: it lags behind pytest 9.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

TOKEN = "test-token"  # as in conftest: POST /items is fuzzed past its auth check too
EXAMPLES = 20


def test_no_server_errors(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=4096)
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures: list[str] = []
    n_operations = 0
    for result in schema.get_all_operations():
        op = result.ok()
        n_operations += 1

        @given(case=op.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.body!r}: {response.status_code}")
            assert response.status_code < 500

        with contextlib.suppress(AssertionError):  # recorded above; keep fuzzing the other operations
            fuzz()
    assert n_operations >= 10
    routes = client.get("/metrics", params={"format": "json"}).json()["routes"]
    statuses = {int(s) for r in routes.values() for s in r["by_status"]}
    assert sum(r["count"] for r in routes.values()) >= 5 * n_operations  # the fuzzing really ran
    assert {200, 422} <= statuses
    assert not failures, "\n".join(failures[:20])
