"""The item content tower: it learns, it scores items it never saw, and it survives save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from playnext.data.split import cold_item_split
from playnext.data.synthetic import generate_world
from playnext.errors import ConfigError
from playnext.evaluate.cold import evaluate_cold, id_only
from playnext.evaluate.protocol import evaluate, model_scorer
from playnext.models.hstu import HSTU, HSTUConfig
from playnext.models.popular import Popular
from playnext.models.sasrec import SASRec, SASRecConfig

FEATS = ["genres", "kind", "year", "text"]
SMALL = {"dim": 32, "max_len": 30, "epochs": 12, "text_encoder": "hashing", "verbose": False}


@pytest.fixture(scope="module")
def cold():  # type: ignore[no-untyped-def]
    return cold_item_split(generate_world(n_users=500, n_items=250, seed=0), 0.15, by="random", seed=0)


@pytest.fixture(scope="module")
def content_model(cold):  # type: ignore[no-untyped-def]
    return SASRec(SASRecConfig(item_features=FEATS, **SMALL)).fit(cold.warm.train, cold.warm.valid)


def test_content_tower_ranks_unseen_items_and_learns_the_warm_ones(cold, content_model) -> None:  # type: ignore[no-untyped-def]
    warm = cold.warm
    vecs = content_model.content_vectors(cold.cold_meta)
    got = evaluate_cold(lambda u, h: content_model.score_new_items(u, h, vecs), cold)
    chance = evaluate_cold(id_only(content_model.score, cold.n_cold), cold)
    assert got["cold/HR@10"] > 1.5 * chance["cold/HR@10"]  # the planted genre tastes carry over
    assert got["all/HR@10"] > 0.0 == chance["all/HR@10"]
    pop = Popular().fit(warm.train)
    ndcg = evaluate(model_scorer(content_model), warm.test, warm.train.n_items, ks=(10,)).metrics["NDCG@10"]
    base = evaluate(model_scorer(pop), warm.test, warm.train.n_items, ks=(10,)).metrics["NDCG@10"]
    assert ndcg > base


def test_saved_content_model_scores_and_reads_content_alike(cold, content_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    content_model.save(tmp_path)
    loaded = SASRec.load(tmp_path)
    assert loaded.has_content
    rows = cold.cold.history.take(np.arange(4))
    users = cold.cold.users[:4]
    assert torch.allclose(loaded.score(users, rows), content_model.score(users, rows), atol=1e-5)
    assert torch.allclose(
        loaded.content_vectors(cold.cold_meta), content_model.content_vectors(cold.cold_meta)
    )


def test_extend_items_reads_the_new_items_features(cold, content_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    content_model.save(tmp_path)
    m = SASRec.load(tmp_path)
    n = m.n_items_
    meta = cold.cold_meta.head(3)
    m.extend_items([[0], [1], []], meta=meta)
    assert m.n_items_ == n + 3
    with torch.no_grad():
        tower = m.net_.content(None)[n + 1 :]  # (3, D) the content part of the new rows
    assert torch.allclose(tower, m.content_vectors(meta), atol=1e-6)
    plain = SASRec.load(tmp_path)
    plain.extend_items([[0]])  # without metadata a new item's content is "unknown" (zeros)
    assert int(plain.net_.content.genres[-1].abs().sum()) == 0


def test_hstu_content_vectors_are_its_output_vectors(cold) -> None:  # type: ignore[no-untyped-def]
    cfg = HSTUConfig(item_features=["genres", "year"], **{**SMALL, "epochs": 2})
    m = HSTU(cfg).fit(cold.warm.train)
    v = m.content_vectors(cold.cold_meta)
    # unit length over the temperature, as its own items' vectors: a score is cos / temperature
    assert torch.allclose(v.norm(dim=1) * cfg.temperature, torch.ones(len(v)), atol=1e-5)
    s = m.score_new_items(cold.cold.users[:2], cold.cold.history.take(np.arange(2)), v)
    assert s.shape == (2, cold.n_warm + cold.n_cold)


def test_a_feature_the_metadata_lacks_is_refused_by_name(cold) -> None:  # type: ignore[no-untyped-def]
    train = cold.warm.train
    no_years = train.meta.with_columns(pl.lit(None, dtype=pl.Int32).alias("year"))
    data = type(train)(train.frame, train.users, train.items, no_years, train.name)
    with pytest.raises(ConfigError, match="year"):
        SASRec(SASRecConfig(item_features=["year"], **SMALL)).fit(data)
    with pytest.raises(ConfigError, match="item_features"):
        SASRec(SASRecConfig(item_features=["colour"]))
    with pytest.raises(ConfigError, match="sparse"):
        SASRec(SASRecConfig(item_features=["genres"], sparse_embeddings=True, loss="sampled_softmax"))
