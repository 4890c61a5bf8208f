"""Serving fixtures: one tiny EASE artifact on the synthetic world, and an app around it per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from playnext.artifact import Artifact
from playnext.data.interactions import Interactions
from playnext.data.synthetic import generate_world, next_in_series
from playnext.models.ease import EASE, EASEConfig
from playnext.serve import Settings, create_app

TOKEN = "test-token"


@pytest.fixture(scope="session")
def world() -> Interactions:
    return generate_world(n_users=300, n_items=600, seed=0)


@pytest.fixture(scope="session")
def artifact(world: Interactions) -> Artifact:
    model = EASE(EASEConfig(l2=50.0)).fit(world)
    return Artifact.from_data(model, world, {"dataset": "synthetic", "model": "ease"})


@pytest.fixture(scope="session")
def sequel(world: Interactions) -> tuple[str, str]:
    """A first instalment and its sequel that users actually watched in order (a planted answer)."""
    succ = next_in_series(world)
    counts = world.item_counts()
    firsts = [i for i in np.argsort(-counts) if succ[i] >= 0 and world.items.external[int(i)].endswith("-1")]
    first = int(firsts[0])
    return world.items.external[first], world.items.external[int(succ[first])]


def _settings(**overrides: object) -> Settings:
    base: dict[str, object] = {"text_encoder": "hashing", "token": TOKEN, "cache_dir": None}
    base.update(overrides)
    return Settings.model_validate(base)


@pytest.fixture
def make_client(artifact: Artifact) -> Iterator[Callable[..., TestClient]]:
    """`make_client(max_k=5, …)`: a started app with these settings over the shared artifact."""
    opened: list[TestClient] = []

    def make(art: Artifact | None = None, **overrides: object) -> TestClient:
        c = TestClient(create_app(art if art is not None else artifact, _settings(**overrides)))
        c.__enter__()
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}
