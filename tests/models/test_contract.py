"""One contract, every registered model: it learns a planted answer, saves and loads exactly,
refits from scratch, survives odd histories, rejects bad configs and corrupt files, and the
neural ones resume an interrupted run exactly where the last complete checkpoint left off.

The data: 200 users each walk a cycle over 100 items (item k is always followed by k + 1), so
the held-out next item is determined by the history while popularity is nearly uniform.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from playnext.data.interactions import Histories, Interactions
from playnext.data.split import Split, leave_one_out
from playnext.errors import ConfigError
from playnext.evaluate.protocol import evaluate, model_scorer
from playnext.models.base import Recommender
from playnext.models.neural import NeuralRecommender
from playnext.models.parts import buckets
from playnext.models.registry import create, get, names
from playnext.models.sequence import SequenceRecommender
from playnext.train.batches import left_pad

NAMES = names()
N_USERS, N_ITEMS = 200, 100
COLD = "cold"  # an item whose only interaction is a test target: never seen in training
SOLO = "solo"
DETOUR = 0.4  # typed cycles: the share of steps that are a detour

# small and quick on 2 CPU cores; anything not listed runs with its defaults
FAST: dict[str, dict[str, Any]] = {
    "sasrec": {"dim": 32, "max_len": 16, "epochs": 4, "lr": 1e-2, "batch_size": 64, "dropout": 0.1},
    "hstu": {
        "dim": 32,
        "max_len": 16,
        "epochs": 6,
        "lr": 1e-2,
        "batch_size": 64,
        "dropout": 0.1,
        "n_negatives": 64,
    },
    "gru4rec": {
        "dim": 32,
        "hidden": 32,
        "max_len": 16,
        "epochs": 5,
        "lr": 2e-2,
        "batch_size": 64,
        "dropout": 0.0,
    },
    "caser": {
        "dim": 16,
        "max_len": 3,
        "n_h": 4,
        "n_v": 2,
        "epochs": 6,
        "lr": 2e-2,
        "batch_size": 256,
        "dropout": 0.1,
    },
    "mlp": {"dim": 16, "layers": "32,16", "epochs": 6, "lr": 2e-2, "batch_size": 256},
}
QUIET = {"verbose": False, "patience": 0, "warmup_epochs": 0.0}


def is_neural(name: str) -> bool:
    return issubclass(get(name), NeuralRecommender)


def params(name: str, **over: Any) -> dict[str, Any]:
    return {**FAST.get(name, {}), **(QUIET if is_neural(name) else {}), **over}


def cycles(n_users: int = N_USERS, n_items: int = N_ITEMS, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    users: list[str] = []
    items: list[str] = []
    for u in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(8, 16))
        walk = [str((start + k) % n_items) for k in range(length)]
        if u == 0:
            walk[-1] = COLD
        users += [f"u{u}"] * length
        items += walk
    users.append(SOLO)  # a user with a single interaction: kept in train, never evaluated
    items.append("7")
    return Interactions.from_frame(pl.DataFrame({"user": users, "item": items}))


@pytest.fixture(scope="module")
def split() -> Split:
    return leave_one_out(cycles())


@pytest.fixture(scope="module")
def fitted(split: Split) -> dict[str, Recommender]:
    """One fitted model per name, shared by the tests that only read it."""
    return {}


def fit(name: str, split: Split, cache: dict[str, Recommender]) -> Recommender:
    if name not in cache:
        cache[name] = create(name, **params(name)).fit(split.train, split.valid)
    return cache[name]


def test_models_are_registered() -> None:
    assert {"popular", "recency", "ease", "sasrec", "gru4rec", "caser", "mlp"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_learns_planted_answer(name: str, split: Split, fitted: dict[str, Recommender]) -> None:
    if name == "popular":
        pytest.skip("popularity is the baseline itself")
    if name == "recency":
        pytest.skip("seen items masked, it is popularity; its planted answer is re-listening (test_recency)")
    model = fit(name, split, fitted)
    hr = evaluate(model_scorer(model), split.test, split.train.n_items).metrics["HR@10"]
    pop = create("popular").fit(split.train)
    pop_hr = evaluate(model_scorer(pop), split.test, split.train.n_items).metrics["HR@10"]
    assert hr >= pop_hr + 0.4, f"{name}: HR@10 {hr:.3f} vs popularity {pop_hr:.3f}"


@pytest.mark.parametrize("name", NAMES)
def test_save_load_gives_identical_scores(
    name: str, split: Split, fitted: dict[str, Recommender], tmp_path: Path
) -> None:
    model = fit(name, split, fitted)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.config == model.config
    users, hist = split.test.users, split.test.history
    assert torch.equal(model.score(users, hist), loaded.score(users, hist))


@pytest.mark.parametrize("name", NAMES)
def test_item_embeddings_are_the_vectors_scores_are_made_of(
    name: str, split: Split, fitted: dict[str, Recommender]
) -> None:
    """Re-ranking (MMR) compares items by these vectors: a sequence model's scores for any history
    are its state times them, so they are the model's own geometry; other models give None."""
    model = fit(name, split, fitted)
    vectors = model.item_embeddings()
    if not issubclass(get(name), SequenceRecommender):
        assert vectors is None or (vectors.shape[0] == model.n_items_ and np.isfinite(vectors).all())
        return
    assert vectors is not None and vectors.shape[0] == model.n_items_ and np.isfinite(vectors).all()
    scores = model.score(split.test.users[:5], split.test.history.take(np.arange(5))).numpy().T  # (I, 5)
    state, *_ = np.linalg.lstsq(vectors.astype(np.float64), scores.astype(np.float64), rcond=None)
    residual = np.abs(vectors @ state - scores).max()
    assert residual <= 1e-4 * np.abs(scores).max(), residual


@pytest.mark.parametrize("name", [n for n in NAMES if issubclass(get(n), SequenceRecommender)])
def test_scoring_shortcut_matches_the_full_forward_pass(
    name: str, split: Split, fitted: dict[str, Recommender]
) -> None:
    """encode_last (what scoring runs) skips work only: it equals the last full-pass state."""
    model = fit(name, split, fitted)
    assert isinstance(model, SequenceRecommender)
    rows = split.test.history.take(np.arange(12))
    seq = torch.from_numpy(left_pad(rows, model.config.max_len))  # (12, T), left padding included
    with torch.no_grad():
        full, last = model.net_.encode(seq)[:, -1], model.net_.encode_last(seq)
    torch.testing.assert_close(last, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", [n for n in NAMES if issubclass(get(n), SequenceRecommender)])
def test_scores_do_not_depend_on_row_order_or_chunking(
    name: str, split: Split, fitted: dict[str, Recommender], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scoring runs the rows longest first in chunks and puts each row's scores back in place."""
    model = fit(name, split, fitted)
    users, history = split.test.users, split.test.history
    whole = model.score(users, history)
    monkeypatch.setattr(buckets, "SCORE_CHUNK", 7)  # several chunks per call
    perm = np.random.default_rng(0).permutation(len(users))
    shuffled = model.score(users[perm], history.take(perm))
    torch.testing.assert_close(shuffled, whole[torch.from_numpy(perm)], atol=1e-4, rtol=1e-4)
    one = model.score(users[perm[:1]], history.take(perm[:1]))  # alone: no padding at all
    torch.testing.assert_close(one[0], whole[int(perm[0])], atol=1e-4, rtol=1e-4)


def test_a_model_saved_for_a_missing_device_loads_on_this_one(
    split: Split, fitted: dict[str, Recommender], tmp_path: Path
) -> None:
    """A model trained on a GPU box names cuda in its config; a machine without one still serves it."""
    model = fit("sasrec", split, fitted)
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["config"]["device"] = "cuda:0" if not torch.cuda.is_available() else "mps"
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, NeuralRecommender) and isinstance(model, NeuralRecommender)
    assert loaded.device.type == model.device.type
    users, hist = split.test.users, split.test.history
    assert torch.equal(model.score(users, hist), loaded.score(users, hist))


@pytest.mark.parametrize("name", NAMES)
def test_refit_starts_fresh(name: str, split: Split) -> None:
    cfg = params(name, epochs=2) if is_neural(name) else params(name)
    a = create(name, **cfg).fit(split.train, split.valid)
    first = a.score(split.test.users, split.test.history)
    small = leave_one_out(cycles(n_users=30, n_items=40, seed=1))
    a.fit(small.train, small.valid)
    assert a.n_items_ == small.train.n_items != split.train.n_items
    assert a.score(small.test.users, small.test.history).shape == (len(small.test), small.train.n_items)
    a.fit(split.train, split.valid)  # same seed, same data: same model
    assert torch.equal(first, a.score(split.test.users, split.test.history))


@pytest.mark.parametrize("name", NAMES)
def test_odd_histories_score_finite(name: str, split: Split, fitted: dict[str, Recommender]) -> None:
    model = fit(name, split, fitted)
    data = split.train
    cold = int(data.items.to_internal([COLD])[0])
    assert data.item_counts()[cold] == 0  # never seen in training
    one = int(data.users.to_internal([SOLO])[0])
    assert data.sequences().lengths[one] == 1
    rows = [[7], [], [cold], [5, cold], list(range(60))]
    users = np.array([one, -1, one, -1, one], dtype=np.int64)
    scores = model.score(users, Histories.from_lists(rows))
    assert scores.shape == (len(rows), data.n_items)
    assert torch.isfinite(scores).all()


def bad_params(name: str) -> list[dict[str, Any]]:
    fields = get(name).config_class.__dataclass_fields__
    bad: list[dict[str, Any]] = [{"no_such_knob": 1}]
    for key, value in (
        ("dim", -4),
        ("loss", "nope"),
        ("lr", -1.0),
        ("epochs", -1),
        ("max_len", -1),
        ("dropout", 1.5),
        ("l2", -1.0),
        ("batch_size", -1),
    ):
        if key in fields:
            bad.append({key: value})
    return bad


@pytest.mark.parametrize("name", NAMES)
def test_invalid_config_rejected_before_training(name: str) -> None:
    for bad in bad_params(name):
        with pytest.raises(ConfigError):
            create(name, **{**params(name), **bad})


@pytest.mark.parametrize("name", NAMES)
def test_corrupt_model_files_refused(
    name: str, split: Split, fitted: dict[str, Recommender], tmp_path: Path
) -> None:
    fit(name, split, fitted).save(tmp_path / "m")
    (tmp_path / "m" / "weights.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ConfigError, match="cannot read weights"):
        Recommender.load(tmp_path / "m")


class Interrupted(Exception):
    pass


def crash_after(epoch: int) -> Any:
    def hook(done: int, logs: dict[str, float]) -> None:
        if done == epoch:
            raise Interrupted

    return hook


@pytest.mark.parametrize("name", [n for n in NAMES if is_neural(n)])
def test_resume_continues_from_last_checkpoint(name: str, split: Split, tmp_path: Path) -> None:
    users, hist = split.test.users, split.test.history
    full = create(name, **params(name, epochs=2, checkpoint_dir=str(tmp_path / "a"))).fit(
        split.train, split.valid
    )
    cfg = params(name, epochs=2, checkpoint_dir=str(tmp_path / "b"))
    crashed = create(name, **cfg)
    crashed.on_epoch_end = crash_after(1)
    with pytest.raises(Interrupted):
        crashed.fit(split.train, split.valid)
    resumed = create(name, **{**cfg, "resume": True})
    ran: list[int] = []
    resumed.on_epoch_end = lambda done, logs: ran.append(done)
    resumed.fit(split.train, split.valid)
    assert ran == [2]  # epoch 1 came from the checkpoint
    assert torch.equal(full.score(users, hist), resumed.score(users, hist))


@pytest.mark.parametrize("name", [n for n in NAMES if is_neural(n)])
def test_corrupt_checkpoint_refused(name: str, split: Split, tmp_path: Path) -> None:
    cfg = params(name, epochs=1, checkpoint_dir=str(tmp_path))
    create(name, **cfg).fit(split.train, split.valid)
    weights = next(tmp_path.glob("epoch-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ConfigError, match="corrupt checkpoint"):
        create(name, **{**cfg, "resume": True}).fit(split.train, split.valid)
    (tmp_path / "checkpoint.json").write_text("{not json")
    with pytest.raises(ConfigError, match="corrupt checkpoint"):
        create(name, **{**cfg, "resume": True}).fit(split.train, split.valid)


def saved_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The network weights in a run's checkpoint folder, which keeps only its latest epoch."""
    (only,) = folder.glob("epoch-*.safetensors")
    return {k: v for k, v in load_file(str(only)).items() if k.startswith("model/")}


@pytest.mark.parametrize("name", ["sasrec", "hstu"])
def test_weight_average_scores_and_resumes_without_moving_training(
    name: str, split: Split, tmp_path: Path
) -> None:
    users, hist = split.test.users, split.test.history
    create(name, **params(name, epochs=2, checkpoint_dir=str(tmp_path / "plain"))).fit(
        split.train, split.valid
    )
    cfg = params(name, epochs=2, ema_decay=0.9, checkpoint_dir=str(tmp_path / "ema"))
    averaged = create(name, **cfg).fit(split.train, split.valid)
    # the average is swapped in only to score: the live weights take the same path
    plain, live = saved_weights(tmp_path / "plain"), saved_weights(tmp_path / "ema")
    assert plain.keys() == live.keys() and all(torch.equal(plain[k], live[k]) for k in plain)
    # what is kept is an average, not the live weights
    kept = averaged.net_.state_dict()
    assert not all(torch.equal(kept[k[len("model/") :]], v) for k, v in live.items())
    # an interrupted averaged run resumes to the same average (no validation: the last average
    # is what is kept, so the average carried over in the checkpoint decides the result)
    whole = create(name, **{**cfg, "checkpoint_dir": str(tmp_path / "whole")}).fit(split.train)
    crashed = create(name, **{**cfg, "checkpoint_dir": str(tmp_path / "crash")})
    crashed.on_epoch_end = crash_after(1)
    with pytest.raises(Interrupted):
        crashed.fit(split.train)
    resumed = create(name, **{**cfg, "checkpoint_dir": str(tmp_path / "crash"), "resume": True})
    resumed.fit(split.train)
    assert torch.equal(whole.score(users, hist), resumed.score(users, hist))


def test_a_run_stopped_part_way_down_a_longer_schedule_retraces_it(split: Split, tmp_path: Path) -> None:
    """`schedule_epochs`: 2 epochs of a 3-epoch schedule are the first 2 epochs of the 3-epoch run,
    bit for bit; 2 epochs of a 2-epoch schedule are not (their learning rates fall sooner)."""

    longer = create("sasrec", **params("sasrec", epochs=3, checkpoint_dir=str(tmp_path / "long")))
    longer.on_epoch_end = crash_after(2)
    with pytest.raises(Interrupted):
        longer.fit(split.train)
    part = params("sasrec", epochs=2, schedule_epochs=3, checkpoint_dir=str(tmp_path / "part"))
    create("sasrec", **part).fit(split.train)
    short = params("sasrec", epochs=2, checkpoint_dir=str(tmp_path / "short"))
    create("sasrec", **short).fit(split.train)
    for run in ("long", "part", "short"):
        assert [f.name for f in (tmp_path / run).glob("epoch-*")] == ["epoch-0002.safetensors"]
    full, stopped, compressed = (saved_weights(tmp_path / run) for run in ("long", "part", "short"))
    assert full.keys() == stopped.keys() and all(torch.equal(full[k], stopped[k]) for k in full)
    assert not all(torch.equal(full[k], compressed[k]) for k in full)
    with pytest.raises(ConfigError, match="schedule_epochs"):
        create("sasrec", **params("sasrec", epochs=3, schedule_epochs=2))


def test_refit_trains_the_chosen_epochs_on_train_and_valid(split: Split, tmp_path: Path) -> None:
    from playnext.experiment import select_and_test

    cfg = params("sasrec", epochs=3, max_minutes=60.0, checkpoint_dir=str(tmp_path))
    res = select_and_test("sasrec", split, grid=[cfg], refit=True)
    chosen, refit = res.chosen.report_, res.model.report_
    assert res.refit_params is not None and res.refit_params["epochs"] == chosen.best_epoch >= 1
    assert res.refit_params["max_minutes"] == 0.0  # the schedule ends with the chosen epochs
    assert refit.epochs == chosen.best_epoch and refit.best_epoch == -1  # no validation in the refit
    assert res.refit_params["checkpoint_dir"] == str(tmp_path / "refit")
    assert (tmp_path / "refit" / "checkpoint.json").exists()
    # it trained on the validation events too: its popularity prior counts them
    counts = split.train_and_valid().item_counts()
    assert counts.sum() == len(split.train) + len(split.valid)
    prior = torch.from_numpy(np.log((counts + 1.0) / (counts.sum() + len(counts)))).float()
    assert torch.equal(res.model.item_log_freq_, prior)


@pytest.mark.parametrize("name", ["sasrec", "hstu"])
def test_length_buckets_keep_the_per_position_objective_and_learn(name: str, split: Split) -> None:
    model = create(name, **params(name, length_buckets=2))
    model.n_items_ = split.train.n_items
    model._prepare(split.train)  # type: ignore[attr-defined]
    batches = list(model.train_batches(np.random.default_rng(0), 32, 0, 1))  # type: ignore[attr-defined]
    terms = np.array([int((b["targets"] > 0).sum()) for b in batches])
    scales = np.array([float(b["loss_scale"]) for b in batches])
    # scale = the batch's share of the positions: Σ scale·mean loss = Σ position losses / mean
    np.testing.assert_allclose(scales, terms / terms.mean(), rtol=1e-6)
    plain = create(name, **params(name))
    plain.n_items_ = split.train.n_items
    plain._prepare(split.train)  # type: ignore[attr-defined]
    unscaled = plain.train_batches(np.random.default_rng(0), 32, 0, 1)  # type: ignore[attr-defined]
    assert all("loss_scale" not in b for b in unscaled)  # no buckets: the plain mean, as before
    fitted = model.fit(split.train, split.valid)
    hr = evaluate(model_scorer(fitted), split.test, split.train.n_items).metrics["HR@10"]
    pop = create("popular").fit(split.train)
    pop_hr = evaluate(model_scorer(pop), split.test, split.train.n_items).metrics["HR@10"]
    assert hr >= pop_hr + 0.4, f"{name} with length buckets: HR@10 {hr:.3f} vs popularity {pop_hr:.3f}"


@pytest.mark.parametrize(
    "variant",
    [
        {"block": "sasrec"},
        {"activation": "relu"},
        {"init": "xavier"},
        {"scale_items": False},
        {"attn_dropout": 0.2},
        {"adam_beta2": 0.98},
    ],
    ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()),
)
def test_sasrec_block_variants_learn(variant: dict[str, Any], split: Split) -> None:
    """Each block variant of the ladder (docs/ladder.md) still learns the planted answer."""
    model = create("sasrec", **params("sasrec", **variant)).fit(split.train, split.valid)
    for key, value in variant.items():
        assert getattr(model.config, key) == value
    hr = evaluate(model_scorer(model), split.test, split.train.n_items).metrics["HR@10"]
    pop = create("popular").fit(split.train)
    pop_hr = evaluate(model_scorer(pop), split.test, split.train.n_items).metrics["HR@10"]
    assert hr >= pop_hr + 0.4, f"sasrec {variant}: HR@10 {hr:.3f} vs popularity {pop_hr:.3f}"


# ---- typed events: the same contract for every model with an action embedding --------------
TYPED = [n for n in NAMES if "actions" in get(n).config_class.field_types()]


def typed_cycles(n_users: int = N_USERS, n_items: int = N_ITEMS, seed: int = 0) -> Interactions:
    """Cycles with two kinds of detour that look alike without their event: a `watch` of a
    random item X (the user jumps to X and walks on from X + 1) or a `skip` of X (a dislike:
    the walk resumes where it was, never at X + 1). Every user's history ends with a detour,
    half of them skips, so the held-out next item depends on the last event's type alone."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, str, float]] = []
    for u in range(n_users):
        at, length = int(rng.integers(n_items)), int(rng.integers(10, 18))
        for k in range(length):
            last = k == length - 2  # the detour right before the test target
            if k in (0, length - 1) or not (last or rng.random() < DETOUR):
                rows.append((f"u{u}", str(at), "watch", 1.0))
                at = (at + 1) % n_items
                continue
            x = str((at + int(rng.integers(10, n_items - 10))) % n_items)  # far from the walk
            if rng.random() < 0.5:
                rows.append((f"u{u}", x, "skip", float(rng.uniform(0.0, 0.2))))
            else:
                rows.append((f"u{u}", x, "watch", 1.0))
                at = (int(x) + 1) % n_items
    user, item, event, value = zip(*rows, strict=True)
    frame = pl.DataFrame({"user": user, "item": item, "event": event, "weight": value})
    return Interactions.from_frame(frame)


@pytest.fixture(scope="module")
def typed_split() -> Split:
    return leave_one_out(typed_cycles(n_users=400))


TYPED_EPOCHS = 30  # the two-hop rule "after a skip, resume the walk" needs more steps than the cycle


@pytest.mark.parametrize("name", TYPED)
def test_typed_events_beat_untyped_on_planted_skips(name: str, typed_split: Split) -> None:
    """Without events a skipped X and a watched X read the same, so half the answers rank
    second at best; the action embedding tells them apart (a planted answer: this can fail).
    No validation: its targets are the detours themselves, random, so the last epoch is kept."""
    test, n = typed_split.test, typed_split.train.n_items
    ndcg = {}
    for actions in (False, True):
        # HSTU's sampled softmax learns the two-hop rule too slowly for a test; its full softmax does
        extra = {"loss": "ce"} if name == "hstu" else {}
        model = create(name, **params(name, actions=actions, epochs=TYPED_EPOCHS, **extra))
        model.fit(typed_split.train)
        ndcg[actions] = evaluate(model_scorer(model), test, n, ks=(10,)).metrics["NDCG@10"]
    assert ndcg[True] >= ndcg[False] + 0.1, f"{name}: typed {ndcg[True]:.3f} vs untyped {ndcg[False]:.3f}"


@pytest.mark.parametrize("name", TYPED)
def test_typed_model_saves_its_event_types_and_scores_alike(
    name: str, typed_split: Split, tmp_path: Path
) -> None:
    model = create(name, **params(name, actions=True, targets="positive", epochs=1))
    model.fit(typed_split.train, typed_split.valid)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, SequenceRecommender) and loaded.event_types_ == ("skip", "watch")
    users, hist = typed_split.test.users, typed_split.test.history
    assert hist.typed
    assert torch.equal(model.score(users, hist), loaded.score(users, hist))
    untyped = Histories(hist.indptr, hist.items)  # events unknown: every event reads as untyped
    assert torch.isfinite(loaded.score(users, untyped)).all()


@pytest.mark.parametrize("name", TYPED)
def test_typed_targets_leave_negative_events_out(name: str, typed_split: Split) -> None:
    """targets='positive' never trains towards a skip; 'weighted' weighs each target by its type."""
    model = create(name, **params(name, actions=True, targets="positive"))
    assert isinstance(model, SequenceRecommender)
    model._learn_vocab(typed_split.train)
    model.n_items_ = typed_split.train.n_items
    model._prepare(typed_split.train)
    batch = next(model.train_batches(np.random.default_rng(0), 64, 0, 1))
    skip = model.event_types_.index("skip")
    acts = batch["actions"]  # the event of each input; the target at t is the input at t + 1
    is_skip_target = (acts[:, 1:] - 2) // model.config.n_value_buckets == skip
    assert is_skip_target.any() and (batch["targets"][:, :-1][is_skip_target & (acts[:, 1:] > 1)] == 0).all()
    model.config.targets, model.config.event_weights = "weighted", ["skip:0.25"]
    model._prepare(typed_split.train)
    batch = next(model.train_batches(np.random.default_rng(0), 64, 0, 1))
    w = batch["target_weights"]
    assert set(torch.unique(w[batch["targets"] > 0]).tolist()) == {0.25, 1.0}


def test_typed_configs_need_a_typed_log(split: Split) -> None:
    with pytest.raises(ConfigError, match="event"):
        create("sasrec", **params("sasrec", actions=True)).fit(split.train)
    with pytest.raises(ConfigError, match="event_weights"):
        create("sasrec", event_weights=["skip"])
