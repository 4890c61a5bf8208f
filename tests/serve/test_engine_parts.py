"""The engine without HTTP: its parts raise domain errors (no statuses), lists come from the one
ranking path (ties to the lower index), and one table turns each error into its HTTP answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from playnext import ranking
from playnext.artifact import Artifact
from playnext.data.interactions import Interactions
from playnext.errors import ConfigError, PlaynextError, UnknownEventTypeError
from playnext.serve.app import error_response
from playnext.serve.catalog import ItemRecord
from playnext.serve.engine import Engine, Query
from playnext.serve.errors import Conflict, NotFound, QueryError, TextOff, UnknownIds
from playnext.serve.settings import Settings
from playnext.state import StateConflict, StateError, StateStore


def make_engine(artifact: Artifact, where: Path, **settings: object) -> Engine:
    base: dict[str, object] = {"text_encoder": "hashing", "torch_threads": 1, "cold_live_weight": 0.0}
    return Engine(artifact, Settings.model_validate({**base, **settings}), StateStore.open(where))


def test_parts_raise_domain_errors(artifact: Artifact, world: Interactions, tmp_path: Path) -> None:
    engine = make_engine(artifact, tmp_path / "a", max_k=5)
    item = world.items.external[0]
    with pytest.raises(UnknownIds) as unknown:
        engine.recommend(Query(user_id="nobody-42", k=5))
    assert unknown.value.ids == ["nobody-42"] and not isinstance(unknown.value, NotFound)
    with pytest.raises(NotFound, match="no-such-item"):
        engine.similar("no-such-item", 3, "model")
    with pytest.raises(QueryError, match="k=6"):
        engine.recommend(Query(history=[item], k=6))
    with pytest.raises(QueryError, match="podcast"):
        engine.recommend(Query(history=[item], k=5, kinds=["podcast"]))
    with pytest.raises(Conflict):
        engine.add_item(ItemRecord(item, "Again", None, [], None))
    with pytest.raises(TextOff):
        make_engine(artifact, tmp_path / "b", text_encoder="none").search("space", Query(), None)


@pytest.mark.parametrize(
    ("error", "status", "extra"),
    [
        (NotFound("item id", ["x"]), 404, {"unknown": ["x"]}),
        (UnknownIds("item id(s) in history", ["x", "y"]), 422, {"unknown": ["x", "y"]}),
        (QueryError("k=6 is above the limit of 5"), 422, {}),
        (UnknownEventTypeError("unknown event type 'buy'", ("play",)), 422, {"known_event_types": ["play"]}),
        (ConfigError("rerank.pool: bad"), 422, {}),
        (Conflict("item id x already exists"), 409, {}),
        (StateConflict("the store already holds 3 added items"), 409, {}),
        (StateError("database is locked"), 503, {}),
    ],
)  # fmt: skip
def test_one_table_maps_each_error_to_its_http_answer(
    error: PlaynextError, status: int, extra: dict[str, object]
) -> None:
    r = error_response(error)
    assert r.status_code == status
    assert json.loads(bytes(r.body)) == {"detail": str(error), **extra}


def test_ties_go_to_the_lower_index_even_across_the_kth_place(artifact: Artifact, tmp_path: Path) -> None:
    """An empty history ranks by popularity, where many items tie: the same rule as `ranking.top_k`."""
    engine = make_engine(artifact, tmp_path)
    pop = engine.scorer.popularity
    order = np.lexsort((np.arange(len(pop)), -pop))  # score descending, then lower index
    k = next(k for k in range(5, 100) if pop[order[k - 1]] == pop[order[k]])  # a tie across the k-th
    want = order[:k]
    got = [x["item_id"] for x in engine.recommend(Query(history=[], k=k, explain=False))]
    assert got == [engine.catalog.ids[i] for i in want]


def test_text_candidates_rank_through_the_same_path(artifact: Artifact, tmp_path: Path) -> None:
    """Search and text similarity rank retrieved candidates as /recommend ranks scores: whatever
    order retrieval returned them in, ties go to the lower index and the rest never come back."""
    scorer = make_engine(artifact, tmp_path).scorer
    cand, values = np.array([9, 5, 2, 7]), np.array([0.5, 1.0, 1.0, 0.25], dtype=np.float32)
    lists = scorer.rank_among(cand, values, 12, k=3)
    assert lists.items.tolist() == [[2, 5, 9]] and lists.scores.tolist() == [[1.0, 1.0, 0.5]]
    assert scorer.rank_among(cand, values, 12, k=6).items.tolist() == [[2, 5, 9, 7, -1, -1]]


def test_cold_items_borrow_through_the_ranking_functions(
    artifact: Artifact, world: Interactions, tmp_path: Path
) -> None:
    engine = make_engine(artifact, tmp_path)
    added = engine.add_item(ItemRecord("cold-1", "Brand New Quest", "game", ["rpg"], 2025))
    index, s = engine.text_index, engine.settings
    assert index is not None
    nn, w = ranking.cold_neighbours(
        index.vectors[-1:], index.vectors[: engine.n_known], s.cold_neighbors, s.cold_temperature
    )
    assert [x["item_id"] for x in added["neighbors"]] == [engine.catalog.ids[j] for j in nn[0, :5]]
    user = world.users.external[3]
    q = Query(user_id=user, only_items=["cold-1"], explain=False)
    known, _ = engine.scorer.model_scores(engine.queries.resolve(q))
    [got] = engine.recommend(q)
    assert got["score"] == pytest.approx(float(ranking.borrowed_scores(known, nn, w)[0]), abs=1e-6)
