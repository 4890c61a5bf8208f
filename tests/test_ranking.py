"""The one ranking path against a brute-force reference: masks, ties, padding, neighbours."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from playnext.data.interactions import Histories
from playnext.ranking import cold_neighbours, item_texts, rank, top_k
from playnext.text import item_text


def reference(
    scores: np.ndarray, k: int, seen: list[list[int]], allowed: np.ndarray | None
) -> list[list[int]]:
    """Sort every candidate by (-score, index): the definition, written as plainly as possible."""
    out = []
    for r, row in enumerate(scores):
        cand = [
            i
            for i in range(len(row))
            if np.isfinite(row[i]) and i not in seen[r] and (allowed is None or allowed[i])
        ]
        out.append(sorted(cand, key=lambda i: (-row[i], i))[:k])
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 12),
    st.integers(1, 14),
    st.integers(0, 10_000),
    st.booleans(),
)
def test_rank_matches_brute_force_with_ties(b: int, n: int, k: int, seed: int, use_allowed: bool) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(b, n)).astype(np.float32)  # few values: many ties
    scores[rng.random((b, n)) < 0.1] = -np.inf
    scores[rng.random((b, n)) < 0.05] = np.nan
    seen = [sorted(set(rng.integers(0, n, size=rng.integers(0, n + 1)).tolist())) for _ in range(b)]
    allowed = rng.random(n) < 0.8 if use_allowed else None
    lists = rank(torch.from_numpy(scores.copy()), k, seen=Histories.from_lists(seen), allowed=allowed)
    want = reference(np.where(np.isnan(scores), -np.inf, scores), k, seen, allowed)
    for r in range(b):
        items, values = lists.row(r)
        assert items.tolist() == want[r]
        assert np.all(np.isfinite(values))
        assert values.tolist() == [float(scores[r, i]) for i in want[r]]


def test_excluded_items_never_come_back_even_when_k_exceeds_the_rest() -> None:
    # a one-item catalog the user has seen: no list at all, never the seen item with -inf
    lists = rank(torch.tensor([[3.0]]), 10, seen=Histories.from_lists([[0]]))
    assert lists.row(0)[0].tolist() == []
    assert lists.items.shape == (1, 1) and lists.items[0, 0] == -1


def test_top_k_breaks_a_tie_straddling_the_cut_by_the_lower_index() -> None:
    s = torch.zeros(1, 1000)
    s[0, 999] = 1.0
    assert top_k(s, 3).items[0].tolist() == [999, 0, 1]


def test_long_form_keeps_rows_in_order_and_ranks_ascending() -> None:
    lists = rank(torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]), 2, seen=Histories.from_lists([[2], []]))
    row, rank_, item, _ = lists.long()
    assert row.tolist() == [0, 0, 1, 1]
    assert rank_.tolist() == [1, 2, 1, 2]
    assert item.tolist() == [1, 0, 0, 1]


def test_rank_refuses_k_below_one() -> None:
    with pytest.raises(ValueError, match="k must be"):
        rank(torch.zeros(1, 3), 0)


def test_cold_neighbours_are_the_nearest_by_cosine_with_softmax_weights() -> None:
    known = np.eye(4, dtype=np.float32)
    new = np.array([[0.8, 0.6, 0.0, 0.0]], dtype=np.float32)
    nn, w = cold_neighbours(new, known, 2, temperature=0.1)
    assert nn.tolist() == [[0, 1]]
    e = np.exp(np.array([0.8, 0.6]) / 0.1)
    np.testing.assert_allclose(w[0], e / e.sum(), rtol=1e-5)


def test_item_texts_read_a_metadata_frame_as_item_text_does() -> None:
    meta = pl.DataFrame(
        {"title": ["Heat", "Blue"], "kind": ["movie", None], "genres": [["crime"], []], "year": [1995, None]}
    )
    assert item_texts(meta) == [
        item_text("Heat", "movie", ["crime"], 1995),
        item_text("Blue", None, [], None),
    ]
