"""VectorIndex: exact and faiss ANN agree; filters are exact in both."""

from __future__ import annotations

import numpy as np
import pytest

from playnext.serve.index import AnnParams, VectorIndex


def _data(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, d))
    x = centers[rng.integers(20, size=n)] + 0.5 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_is_brute_force() -> None:
    x, q = _data(500), _data(7, seed=1)
    index = VectorIndex(16)
    index.add(x)
    s, ids = index.search(q, 10)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    assert index.kind == "exact" and (ids == truth).all()
    assert np.allclose(s, np.take_along_axis(q @ x.T, truth, axis=1), atol=1e-5)


@pytest.mark.parametrize("method", ["ivf", "hnsw"])
def test_ann_recall_and_filters(method: str) -> None:
    x, q = _data(6000), _data(50, seed=1)
    exact = VectorIndex(16, ann_threshold=10**9)
    exact.add(x)
    ann = VectorIndex(16, ann_threshold=1000, params=AnnParams(method=method, exact_below=10))  # type: ignore[arg-type]
    ann.add(x)
    assert ann.kind == f"faiss-{method}"
    _, truth = exact.search(q, 10)
    _, found = ann.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    assert recall >= 0.9
    allowed = np.zeros(len(x), dtype=bool)
    allowed[::3] = True
    _, f = ann.search(q, 10, allowed=allowed)
    assert (f[f >= 0] % 3 == 0).all()
    # rows added after the build are searchable too
    ann.add(q[:1])
    _, top = ann.search(q[:1], 1)
    assert top[0, 0] == len(x)


def test_edge_cases() -> None:
    index = VectorIndex(4)
    s, ids = index.search(np.ones((2, 4)), 3)
    assert ids.shape == (2, 3) and (ids == -1).all() and np.isinf(s).all()
    index.add(np.eye(4, dtype=np.float32))
    s, ids = index.search(np.ones((1, 4)), 10)
    assert (ids[0, :4] >= 0).all() and (ids[0, 4:] == -1).all()
    _, ids = index.search(np.ones((1, 4)), 2, allowed=np.zeros(4, dtype=bool))
    assert (ids == -1).all()
