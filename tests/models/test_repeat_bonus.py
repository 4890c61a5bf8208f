"""The learned repeat bonus: its equation by brute force (scoring, training loss, KV cache), and
its planted answer — on a world with planted re-listens, under the repeat-aware protocol, the
same SASRec with the bonus finds the returning tracks better than without it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from playnext.data.interactions import Histories
from playnext.data.split import leave_one_out
from playnext.data.synthetic import generate_world
from playnext.errors import ConfigError
from playnext.evaluate.protocol import evaluate, model_scorer
from playnext.models.hstu import HSTU, HSTUConfig
from playnext.models.parts.repeat import recency_bucket, recency_buckets
from playnext.models.sasrec import SASRec, SASRecConfig
from playnext.serve.full_pass import full_scores
from playnext.serve.incremental import IncrementalScorer
from playnext.train import batches as B

N_ITEMS, MAX_LEN = 30, 8


def test_recency_buckets_are_log2_of_distance_plus_one() -> None:
    d = torch.arange(300)
    for n in (1, 4, 9):
        want = torch.tensor([min((int(x) + 1).bit_length() - 1, n - 1) for x in d])
        assert torch.equal(recency_bucket(d, n), want)
    assert recency_buckets(200) == 8 and recency_buckets(8) == 4 and recency_buckets(1) == 1


def untrained(name: str) -> SASRec | HSTU:
    torch.manual_seed(2)
    common = {
        "dim": 16,
        "n_heads": 2,
        "n_blocks": 2,
        "max_len": MAX_LEN,
        "dropout": 0.0,
        "repeat_bonus": True,
        "loss": "ce",
    }
    model: SASRec | HSTU = (
        SASRec(SASRecConfig.from_dict(common)) if name == "sasrec" else HSTU(HSTUConfig.from_dict(common))
    )
    model.n_items_, model.n_users_ = N_ITEMS, 1
    model.net_ = model._new_net().eval()
    with torch.no_grad():
        assert model.net_.repeat_beta is not None
        model.net_.repeat_beta.copy_(torch.linspace(2.0, -1.0, len(model.net_.repeat_beta)))
    return model


def brute_bonus(model: SASRec | HSTU, window: list[int]) -> np.ndarray:
    """Σ over every occurrence j of item i in the last max_len items: β[⌊log2(T − 1 − j + 1)⌋]."""
    beta = model.net_.repeat_weights().detach().numpy()
    w = window[-model.config.max_len :]
    out = np.zeros(N_ITEMS)
    for j, item in enumerate(w):
        out[item] += beta[min(int(math.log2(len(w) - j)), len(beta) - 1)]
    return out


@pytest.mark.parametrize("name", ["sasrec", "hstu"])
def test_scores_add_the_bonus_of_every_occurrence_in_the_window(name: str) -> None:
    model = untrained(name)
    rows = [[3, 5, 3, 7], [1] * 3 + list(range(10, 20)), [4]]  # repeats; past max_len; one item
    hist = Histories.from_lists(rows)
    got = model.score(np.full(len(rows), -1), hist).double().numpy()
    model.net_.repeat_beta = None  # the same net without it
    plain = model.score(np.full(len(rows), -1), hist).double().numpy()
    for r, row in enumerate(rows):
        np.testing.assert_allclose(got[r] - plain[r], brute_bonus(untrained(name), row), atol=1e-5)


def test_the_training_loss_is_softmax_ce_over_logits_plus_bonus() -> None:
    model = untrained("sasrec")
    model.net_.train()
    rows = Histories.from_lists([[1, 2, 1, 3, 1, 2], [4, 4, 5]])
    inputs, targets = B.split_next(rows)
    batch = {"inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(targets)}
    loss = model.train_loss(batch)
    h = model.net_.encode(batch["inputs"])  # (B, T, D)
    logits, want = h @ model.net_.item_vectors().T, []  # (B, T, I)
    beta = model.net_.repeat_weights()
    for b in range(inputs.shape[0]):
        for t in range(inputs.shape[1]):
            if targets[b, t] == 0:
                continue
            z = logits[b, t].clone()
            for j in range(t + 1):  # every earlier (and this) input item adds its recency weight
                if inputs[b, j] > 0:
                    z[inputs[b, j] - 1] = (
                        z[inputs[b, j] - 1] + beta[min(int(math.log2(t - j + 1)), len(beta) - 1)]
                    )
            want.append(F.cross_entropy(z[None], torch.tensor([targets[b, t] - 1])))
    assert torch.allclose(loss, torch.stack(want).mean(), atol=1e-5)
    loss.backward()
    grad = model.net_.repeat_beta.grad  # type: ignore[union-attr]
    assert grad is not None and grad.abs().sum() > 0  # the weights learn


@pytest.mark.parametrize("name", ["sasrec", "hstu"])
def test_the_kv_cache_adds_the_same_bonus(name: str) -> None:
    model = untrained(name)
    events = np.random.default_rng(0).integers(0, 6, size=14).tolist()  # few items: many repeats
    scorer = IncrementalScorer(model)
    state, first = scorer.start(events[:3])
    assert torch.allclose(
        first, model.score(np.array([-1]), Histories.from_lists([events[:3]]))[0], atol=1e-5
    )
    for i in range(3, len(events)):
        cached = scorer.append(state, events[i])
        assert torch.allclose(cached, full_scores(model, events[: i + 1]), atol=1e-4), i


def test_it_needs_the_full_softmax_and_is_not_exported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="repeat_bonus needs loss='ce'"):
        SASRecConfig(repeat_bonus=True, loss="bce").validate()
    from typer.testing import CliRunner

    from playnext.artifact import Artifact
    from playnext.cli import app

    world = generate_world(100, 60, seed=0, kinds=("music",), allow_repeats=True, relisten_rate=0.3)
    model = SASRec(SASRecConfig(dim=8, max_len=10, epochs=1, repeat_bonus=True, verbose=False)).fit(world)
    folder = Artifact.from_data(model, world, {"dataset": "synthetic", "model": "sasrec"}).save(
        tmp_path / "m"
    )
    again = Artifact.load(folder).model
    assert torch.equal(again.net_.repeat_beta, model.net_.repeat_beta)  # saved and loaded with the weights
    r = CliRunner().invoke(app, ["export", "--model-dir", str(folder), "--format", "onnx"])
    assert r.exit_code == 2 and "repeat_bonus=true" in " ".join(r.output.split())
    assert not (folder / "model.onnx").exists()


def test_learns_planted_relistens_better_than_without_it() -> None:
    world = generate_world(600, 300, seed=3, kinds=("music",), allow_repeats=True, relisten_rate=0.3)
    split = leave_one_out(world)
    got, beta = {}, torch.zeros(0)
    for bonus in (False, True):
        cfg = SASRecConfig(dim=32, max_len=30, epochs=8, lr=2e-3, repeat_bonus=bonus, verbose=False, seed=0)
        model = SASRec(cfg).fit(split.train)
        res = evaluate(model_scorer(model), split.test.without_exclusion(), split.train.n_items, repeats=True)
        got[bonus] = res.metrics
        beta = model.net_.repeat_weights().detach() if bonus else beta
    assert got[True]["repeat/NDCG@10"] >= got[False]["repeat/NDCG@10"] + 0.03, got
    assert got[True]["NDCG@10"] > got[False]["NDCG@10"], got
    assert (beta[1:] > 0).all(), beta  # returning after a while is learned as likely


def test_the_service_adds_it_when_seen_items_may_come_back() -> None:
    from fastapi.testclient import TestClient

    from playnext.artifact import Artifact
    from playnext.serve import Settings, create_app

    world = generate_world(100, 60, seed=0, kinds=("music",), allow_repeats=True, relisten_rate=0.3)
    model = SASRec(SASRecConfig(dim=8, max_len=10, epochs=1, repeat_bonus=True, verbose=False)).fit(world)
    with torch.no_grad():
        model.net_.repeat_beta.zero_()  # type: ignore[union-attr]
        model.net_.repeat_beta[0] = 100.0  # type: ignore[index]  # the last item: bucket 0
    art = Artifact.from_data(model, world, {"dataset": "synthetic", "model": "sasrec"})
    ids = world.items.external.to_list()[:3]
    with TestClient(create_app(art, Settings(text_encoder="none", cache_dir=None))) as c:
        ask = {"history": ids, "k": 3}
        top = c.post("/recommend", json={**ask, "exclude_seen": False}).json()["items"]
        assert top[0]["item_id"] == ids[2]
        assert ids[2] not in [x["item_id"] for x in c.post("/recommend", json=ask).json()["items"]]
