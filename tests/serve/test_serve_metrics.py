"""GET /health and GET /metrics."""

from __future__ import annotations

from fastapi.testclient import TestClient

from playnext.data.interactions import Interactions


def test_health(client: TestClient, world: Interactions) -> None:
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["model"] == "ease"
    assert h["n_items"] == world.n_items and h["n_users"] == world.n_users
    assert h["text_encoder"] == "hashing" and h["text_index"] == "exact"


def test_metrics_count_routes_by_template(client: TestClient, world: Interactions) -> None:
    items = world.items.external.to_list()
    for i in items[:3]:
        client.get(f"/items/{i}/similar")
    client.get("/items/nope/similar")
    text = client.get("/metrics").text
    assert 'playnext_requests_total{method="GET",route="/items/{item_id}/similar",status="200"} 3' in text
    assert 'playnext_requests_total{method="GET",route="/items/{item_id}/similar",status="404"} 1' in text
    labels = 'method="GET",route="/items/{item_id}/similar"'
    bucket = f'playnext_request_duration_seconds_bucket{{{labels},le="+Inf"}}'
    assert f"{bucket} 4" in text
    j = client.get("/metrics", params={"format": "json"}).json()
    entry = j["routes"]["GET /items/{item_id}/similar"]
    assert entry["count"] == 4 and entry["latency_seconds"]["buckets"]["+Inf"] == 4
    buckets = list(entry["latency_seconds"]["buckets"].values())
    assert buckets == sorted(buckets)


def test_docs_and_page(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {
        "/recommend",
        "/search",
        "/items",
        "/items/{item_id}/similar",
        "/sessions/{session_id}/events",
        "/health",
        "/metrics",
    } <= set(spec["paths"])
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "playnext" in page.text
    assert client.get("/static/app.js").status_code == 200
