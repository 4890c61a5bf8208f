"""The feedback loop on the synthetic world: events logged to a SQLite store become the next model,
which is compared with the current one on each user's newest event and published only if not worse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from playnext.artifact import Artifact
from playnext.cli import app
from playnext.data.interactions import Columns, Interactions
from playnext.data.synthetic import generate_world
from playnext.errors import ConfigError
from playnext.models.base import Recommender
from playnext.models.ease import EASE, EASEConfig
from playnext.models.nn import NeuralRecommender
from playnext.models.registry import create
from playnext.models.sasrec import SASRec, SASRecConfig
from playnext.retrain import RetrainOptions, merge, publish, watermark
from playnext.state.store import CatalogPrint, NewEvent, StateStore

runner = CliRunner()
N_NEW = 3  # each user's last N_NEW events are what the server hears after training
SASREC = {"dim": 16, "max_len": 20, "epochs": 3, "lr": 1e-2, "batch_size": 64, "dropout": 0.1}
QUIET = {"verbose": False, "patience": 0, "warmup_epochs": 0.0}
COLD = {"item_id": "brand-new-film", "title": "The Brand New Film", "kind": "movie", "genres": ["drama"]}


def _cut(world: Interactions) -> tuple[Interactions, list[tuple[str, list[str]]]]:
    """The world without each user's last N_NEW events, and those events per user (external ids)."""
    seqs = world.sequences()
    keep = np.ones(len(world), dtype=bool)
    later = []
    for u in range(world.n_users):
        lo, hi = seqs.indptr[u], seqs.indptr[u + 1]
        if hi - lo > N_NEW + 2:
            keep[hi - N_NEW : hi] = False
            later.append((world.users.external[u], world.items.to_external(seqs[u][-N_NEW:])))
    return world.replace(world.frame.filter(pl.Series(keep))), later


@pytest.fixture(scope="module")
def world() -> Interactions:
    return generate_world(n_users=150, n_items=120, seed=0, mean_length=15.0)


@pytest.fixture(scope="module")
def current(world: Interactions, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small SASRec trained on everything but each user's last N_NEW events."""
    train, _ = _cut(world)
    params = {**SASREC, **QUIET}
    model = SASRec(SASRecConfig.from_dict(params)).fit(train)
    folder = tmp_path_factory.mktemp("current") / "model"
    Artifact.from_data(model, train, {"model": "sasrec", "dataset": "synthetic", "params": params}).save(
        folder
    )
    return folder


def _store(folder: Path, world: Interactions, *, anonymous: bool = True, unseen: bool = True) -> Path:
    """Replay every user's held-back events as a session with their user id (plus a cold item, an
    anonymous session and an item no catalog has, unless told otherwise)."""
    _, later = _cut(world)
    store = StateStore.open(folder)
    ts = 1_000.0
    for user, items in later:
        for item in items:
            ts += 1.0
            store.append(f"s-{user}", [NewEvent(item, "watch", 1.0, ts)], user_id=user)
    store.add_cold_item(COLD["item_id"], COLD["title"], COLD["kind"], COLD["genres"], 2026)
    first = later[0][1]
    if anonymous:  # someone without an account watched the cold item after two known ones
        store.append(
            "anon", [NewEvent(i, None, None, ts + k) for k, i in enumerate([*first[:2], COLD["item_id"]])]
        )
    if unseen:
        store.append("anon2", [NewEvent(first[0], ts=ts + 10), NewEvent("mystery-item", ts=ts + 11)])
    store.close()
    return folder


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and mtime: what 'nothing touched' compares."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _json(stdout: str) -> dict[str, Any]:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def _cli(current: Path, store: Path, out: Path, *extra: str) -> Any:
    args = ["retrain", "--model-dir", str(current), "--store", str(store), "--out", str(out)]
    return runner.invoke(app, [*args, "--text-encoder", "hashing", "--epochs", "2", "--json", *extra])


# ---- the data: the catalog grows, ids stay, histories extend ------------------------------------
def test_merge_appends_new_items_and_events_without_moving_known_ids(
    world: Interactions, current: Path, tmp_path: Path
) -> None:
    store = StateStore.open(_store(tmp_path / "state", world))
    art = Artifact.load(current)
    new = merge(art, store.events(), store.cold_items(), encoder="hashing")
    n_known = len(art.items)
    assert new.data.items.external[:n_known].to_list() == art.items.external.to_list()
    assert new.data.items.external[n_known:].to_list() == [COLD["item_id"], "mystery-item"]
    assert new.data.meta.row(n_known, named=True)[Columns.TITLE] == COLD["title"]
    assert new.init_by == {"text": 1, "co-occurrence": 1, "mean": 0}
    # a known user's history is theirs plus their new events, in order
    user, items = _cut(world)[1][0]
    u = int(art.users.to_internal([user], kind="user")[0])
    grown = new.data.items.to_external(new.data.sequences()[u])
    assert grown == art.items.to_external(art.histories[u]) + items
    assert new.data.users.external[-2:].to_list() == ["session:anon", "session:anon2"]
    # the gate asks each user's newest event from everything before it; NEW never trains on it
    row = int(np.flatnonzero(new.gate.users == u)[0])
    assert new.data.items.to_external(new.gate.targets[row]) == items[-1:]
    assert len(new.train) == len(new.data) - len(new.gate)
    assert new.counts["new_events"] == sum(len(i) for _, i in _cut(world)[1]) + 5


def test_a_typed_log_keeps_its_events_and_values(tmp_path: Path) -> None:
    typed = generate_world(n_users=40, n_items=60, seed=1, mean_length=10.0, typed_events=True)
    art = Artifact.from_data(create("popular").fit(typed), typed, {})
    store = StateStore.open(tmp_path / "state")
    item, user = typed.items.external[0], typed.users.external[0]
    store.append("s", [NewEvent(item, "skip", 0.2, 5.0), NewEvent(item, None, None, 6.0)], user_id=user)
    new = merge(art, store.events(), [], encoder="none")
    u = int(art.users.to_internal([user], kind="user")[0])
    before, after = art.histories.take(np.array([u])), new.data.sequences().take(np.array([u]))
    assert after.typed and len(after.items) == len(before.items) + 2
    names = np.array([*after.event_names, "-"])
    old_names = np.array([*before.event_names, "-"])
    assert names[after.events][:-2].tolist() == old_names[before.events].tolist()
    assert np.array_equal(after.values[:-2], before.values, equal_nan=True)
    assert names[after.events][-2:].tolist() == ["skip", "-"]
    assert after.values[-2] == pytest.approx(0.2) and after.values[-1] == 1.0


@pytest.mark.parametrize("name", ["sasrec", "hstu", "gru4rec", "caser", "mlp"])
def test_extend_items_keeps_known_rows_and_starts_new_ones_at_their_neighbours(
    name: str, world: Interactions
) -> None:
    small = {"dim": 8, "epochs": 1, "batch_size": 256, **QUIET}
    if name in ("sasrec", "hstu", "gru4rec", "caser"):
        small["max_len"] = 5
    model = create(name, **small).fit(world)
    assert isinstance(model, NeuralRecommender) and model.warm_startable
    before = {k: v.clone() for k, v in model.net_.state_dict().items()}
    n = world.n_items
    model.extend_items([[0, 2], [], [5]])
    after = model.net_.state_dict()
    assert model.n_items_ == n + 3
    for key, lead in type(model).item_tables.items():
        if key not in before:
            continue
        old, grown = before[key], after[key]
        assert len(grown) == len(old) + 3
        assert torch.equal(grown[: len(old)], old)  # known items untouched
        known = old[lead:]
        assert torch.allclose(grown[len(old)], known[[0, 2]].mean(0))
        assert torch.allclose(grown[len(old) + 1], known.mean(0))
        assert torch.allclose(grown[len(old) + 2], known[5])
    scores = model.score(np.array([0]), world.sequences().take(np.array([0])))
    assert scores.shape == (1, n + 3) and torch.isfinite(scores).all()


@pytest.mark.parametrize("name", ["ease", "popular"])
def test_non_neural_models_refit_instead(name: str, world: Interactions) -> None:
    model: Recommender = create(name).fit(world)
    assert not model.warm_startable
    with pytest.raises(NotImplementedError, match="refit"):
        model.extend_items([[0]])
    with pytest.raises(NotImplementedError, match="refit"):
        model.fine_tune(world)


# ---- the command: warm start, watermark, gate, publish --------------------------------------------
def test_warm_start_grows_the_catalog_advances_the_watermark_and_then_has_nothing_new(
    world: Interactions, current: Path, tmp_path: Path
) -> None:
    store = _store(tmp_path / "state", world)
    before = _tree(current)
    r = _cli(current, store, tmp_path / "next", "--force")
    assert r.exit_code == 0, r.output
    rec = _json(r.stdout)
    assert rec["method"] == "warm start" and rec["new_items"] == 2 and rec["new_users"] == 2
    assert set(rec["current_metrics"]) == set(rec["new_metrics"]) == {"HR@10", "NDCG@10"}
    assert rec["epochs"] == 2 and rec["seconds"] > 0
    nxt = Artifact.load(tmp_path / "next")
    old = Artifact.load(current)
    assert len(nxt.items) == len(old.items) + 2
    scores = nxt.model.score(np.array([-1]), nxt.histories.take(np.array([0])))
    assert torch.isfinite(scores[0, len(old.items) :]).all()  # the new items are ranked too
    assert nxt.recommend(history=[COLD["item_id"]], k=3)  # and usable as input
    info = json.loads((tmp_path / "next" / "artifact.json").read_text())
    s = StateStore.open(store)
    assert watermark(info) == (s.last_seq(), s.cold_seq())
    assert info["retrain"]["current_metrics"] == rec["current_metrics"]
    assert info["retrained_from"] == str(current.resolve())
    assert info["params"] == old.info["params"]  # the lineage's recipe, for a later from-scratch run
    user = old.users.external[0]
    assert len(nxt.history_titles(user)) == len(old.history_titles(user)) + N_NEW
    assert _tree(current) == before

    again = _cli(tmp_path / "next", store, tmp_path / "third")
    assert again.exit_code == 0, again.output
    assert _json(again.stdout)["status"] == "nothing new" and "no new events" in again.stdout
    assert not (tmp_path / "third").exists()
    # one more event: only it is new
    s.append("late", [NewEvent(old.items.external[0], ts=9e9)], user_id=user)
    third = _cli(tmp_path / "next", store, tmp_path / "third", "--force")
    assert third.exit_code == 0, third.output
    assert _json(third.stdout)["new_events"] == 1


def test_the_gate_refuses_a_worse_model_and_force_publishes_it(
    world: Interactions, current: Path, tmp_path: Path
) -> None:
    store = _store(tmp_path / "state", world, anonymous=False, unseen=False)
    root = tmp_path / "root"
    publish(current, root)
    served = _tree(root)
    # a learning rate 10,000× the recipe's wrecks the fine-tuning: NEW must be refused
    bad = _cli(current, store, tmp_path / "bad", "--lr-factor", "1e4", "--publish", str(root))
    assert bad.exit_code == 3, bad.output
    rec = _json(bad.stdout)
    assert rec["status"] == "refused"
    assert rec["new_metrics"]["NDCG@10"] < rec["current_metrics"]["NDCG@10"]
    said = " ".join(bad.stderr.split())
    assert said.startswith("refused") and f"{rec['new_metrics']['NDCG@10']:.4f}" in said
    assert _tree(root) == served  # nothing published
    forced = _cli(
        current, store, tmp_path / "forced", "--lr-factor", "1e4", "--publish", str(root), "--force"
    )
    assert forced.exit_code == 0, forced.output
    assert _json(forced.stdout)["status"] == "forced"
    served_now = (root / "current").resolve()
    assert served_now.parent == (root / "versions").resolve() and served_now.name.endswith("forced")
    assert Artifact.load(root / "current").info["retrain"]["status"] == "forced"


def test_from_scratch_trains_a_fresh_model_with_the_recipe(
    world: Interactions, current: Path, tmp_path: Path
) -> None:
    store = _store(tmp_path / "state", world)
    r = _cli(current, store, tmp_path / "fresh", "--from-scratch", "--force")
    assert r.exit_code == 0, r.output
    rec = _json(r.stdout)
    assert rec["method"] == "from scratch" and rec["lr_factor"] is None
    assert rec["params"]["lr"] == SASREC["lr"] and rec["epochs"] == 2


def test_ease_is_refit(world: Interactions, tmp_path: Path) -> None:
    train, _ = _cut(world)
    Artifact.from_data(EASE(EASEConfig(l2=10.0)).fit(train), train, {"params": {"l2": 10.0}}).save(
        tmp_path / "ease"
    )
    store = _store(tmp_path / "state", world)
    r = _cli(tmp_path / "ease", store, tmp_path / "next", "--force")
    assert r.exit_code == 0, r.output
    assert _json(r.stdout)["method"] == "refit (ease has no warm start)"
    assert len(Artifact.load(tmp_path / "next").items) == train.n_items + 2


def test_ease_is_refit_without_the_logs_skips(world: Interactions, tmp_path: Path) -> None:
    """EASE reads every row as a pick; serving never reads a skip as one for it, and neither
    does retrain: the skips are left out of NEW's data and counted in the record."""
    train, later = _cut(world)
    Artifact.from_data(EASE(EASEConfig(l2=10.0)).fit(train), train, {"params": {"l2": 10.0}}).save(
        tmp_path / "ease"
    )
    old = Artifact.load(tmp_path / "ease")
    store = StateStore.open(tmp_path / "state")
    ts, skipped = 1_000.0, {}
    for n, (user, items) in enumerate(later):
        u = int(old.users.to_internal([user], kind="user")[0])
        seen = set(old.items.to_external(old.histories[u])) | set(items)
        catalog = old.items.external.to_list()
        other = next(i for i in catalog[n % len(catalog) :] + catalog if i not in seen)
        skipped[user] = other
        events = [NewEvent(i, "watch", 1.0, ts + j) for j, i in enumerate(items)]
        store.append(f"s-{user}", [*events, NewEvent(other, "skip", 0.1, ts + N_NEW)], user_id=user)
        ts += 10.0
    store.close()
    r = _cli(tmp_path / "ease", tmp_path / "state", tmp_path / "next", "--force")
    assert r.exit_code == 0, r.output
    rec = _json(r.stdout)
    assert rec["new_events"] == N_NEW * len(later)
    assert rec["left_out_events"] == {"skip": len(later)}
    assert "no 'skip' type" in rec["left_out_why"]
    nxt = Artifact.load(tmp_path / "next")
    for user, items in later[:10]:
        u = int(nxt.users.to_internal([user], kind="user")[0])
        grown = nxt.items.to_external(nxt.histories[u])
        assert grown[-N_NEW:] == items and skipped[user] not in grown[len(grown) - N_NEW :]
        assert len(grown) == len(old.histories[u]) + N_NEW

    only = StateStore.open(tmp_path / "skips")  # a log of skips alone: nothing to learn
    only.append("s", [NewEvent(i, "skip", 0.0, 5.0) for i in later[0][1]], user_id=later[0][0])
    only.close()
    r = _cli(tmp_path / "ease", tmp_path / "skips", tmp_path / "none")
    assert r.exit_code == 0, r.output
    rec = _json(r.stdout)
    assert rec["status"] == "nothing new" and rec["left_out_events"] == {"skip": N_NEW}
    assert "left out" in rec["message"] and not (tmp_path / "none").exists()


def test_publish_swaps_current_atomically_and_keeps_old_versions(current: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = publish(current, root, "v1")
    link = root / "current"
    assert link.is_symlink() and link.resolve() == first.resolve()
    second = publish(current, root, "v2")
    assert first.is_dir() and second.is_dir()  # the old version stays for a rollback
    assert link.resolve() == second.resolve()
    assert Artifact.load(link).model.n_items_ == Artifact.load(current).model.n_items_
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no staging leftovers
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(ConfigError, match="model"):
        publish(broken, root)
    assert link.resolve() == second.resolve()


# ---- bad input: one line, exit 2, nothing touched -----------------------------------------------
def test_bad_inputs_exit_2_and_touch_nothing(world: Interactions, current: Path, tmp_path: Path) -> None:
    store = _store(tmp_path / "state", world)
    root = tmp_path / "root"
    publish(current, root)
    before, served = _tree(current), _tree(root)

    def fails(*args: str, match: str) -> None:
        r = runner.invoke(app, ["retrain", *args, "--publish", str(root)])
        assert r.exit_code == 2, r.output
        said = " ".join(r.stderr.split())  # rich wraps the one message at the console's width
        assert said.startswith("error:") and said.count("error:") == 1 and match in said, r.stderr
        assert not (tmp_path / "out").exists()

    out = ["--out", str(tmp_path / "out")]
    fails("--model-dir", str(current), "--store", str(tmp_path / "nowhere"), *out, match="no state store")
    fails(
        "--model-dir",
        str(current),
        "--store",
        "postgresql://nobody@127.0.0.1:1/none",
        *out,
        match="state store",
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("{not json")
    fails("--model-dir", str(broken), "--store", str(store), *out, match="corrupt")
    empty = StateStore.open(tmp_path / "empty")
    empty.append("s", [NewEvent(" ")])
    empty.close()
    fails("--model-dir", str(current), "--store", str(tmp_path / "empty"), *out, match="name no item")
    assert _tree(current) == before and _tree(root) == served


def test_a_store_of_another_catalog_is_refused(world: Interactions, current: Path, tmp_path: Path) -> None:
    """retrain read any store's log as CURRENT's ids (issue #30): one served with another
    catalog's model is now one line, exit 2, and nothing is written."""
    store = _store(tmp_path / "state", world)
    db = StateStore.open(store)
    db.bind_catalog(CatalogPrint.of(["x", "y"], 2, "lastfm"))  # another model served this store
    db.close()
    r = _cli(current, store, tmp_path / "out")
    said = " ".join(r.stderr.split())
    assert r.exit_code == 2, r.output
    assert said.count("error:") == 1 and "belongs to another catalog (dataset 'lastfm', 2 items" in said
    assert "'synthetic'" in said and "(--store)" in said
    assert not (tmp_path / "out").exists()


def test_options_are_checked_before_any_work() -> None:
    for bad, match in (
        ({"lr_factor": 0.0}, "lr_factor"),
        ({"epochs": 0}, "epochs"),
        ({"budget_minutes": -1.0}, "budget"),
        ({"text_encoder": "bert"}, "text encoder"),
    ):
        with pytest.raises(ConfigError, match=match):
            RetrainOptions(**bad).validate()


# ---- typed events: what the store heard keeps teaching a typed model ---------------------------
def _typed_store(folder: Path, art: Artifact, *extra: NewEvent) -> Path:
    """Twenty known users each watched, skipped and liked three known items (plus `extra`)."""
    store = StateStore.open(folder)
    items = art.items.external.to_list()
    ts = 1_000.0
    for n, user in enumerate(art.users.external[:20].to_list()):
        kinds = [("watch", 0.9), ("skip", 0.1), ("like", None)]
        events = [NewEvent(items[(3 * n + j) % 60], e, v, ts + j) for j, (e, v) in enumerate(kinds)]
        store.append(f"s-{user}", events, user_id=user)
        ts += 10.0
    if extra:
        store.append("odd", list(extra))
    store.close()
    return folder


def test_a_typed_model_keeps_learning_from_the_stores_event_types(
    typed_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playnext.models.nn import UNTYPED_ACTION, SequenceRecommender
    from playnext.retrain import known_scorer, retrain

    art = Artifact.load(typed_model_dir)
    store = _typed_store(tmp_path / "state", art)
    seen: dict[str, Any] = {}
    prepare = SequenceRecommender._prepare_events

    def spy(self: SequenceRecommender, seqs: Any) -> None:
        prepare(self, seqs)
        seen.update(seqs=seqs, acts=self._acts, acts_of=self.action_ids(seqs))

    monkeypatch.setattr(SequenceRecommender, "_prepare_events", spy)
    done = retrain(
        typed_model_dir, store, tmp_path / "next", RetrainOptions(text_encoder="none", epochs=1, force=True)
    )
    assert done.record["method"] == "warm start" and done.model_dir is not None
    assert done.record["left_out_events"] == {} and done.record["new_events"] == 60
    # the fine-tune data: each user's watch and skip (the like is the gate's question), typed
    seqs = seen["seqs"]
    names = np.array([*seqs.event_names, "-"])
    for u in range(20):
        hi = int(seqs.indptr[u + 1])
        assert names[seqs.events[hi - 2 : hi]].tolist() == ["watch", "skip"]
        np.testing.assert_allclose(seqs.values[hi - 2 : hi], [0.9, 0.1], rtol=1e-6)
        assert (seen["acts_of"][hi - 2 : hi] != UNTYPED_ACTION).all()  # read as typed inputs
    assert seen["acts"] is not None  # … which the training batches carry
    new = Artifact.load(done.model_dir)
    assert new.model.event_types_ == ("like", "skip", "watch")  # type: ignore[attr-defined]
    assert new.histories.typed and new.event_types == ("like", "skip", "watch")
    # the gate scores a typed model on its events too
    data = merge(art, StateStore.open(store).events(), [], encoder="none")
    score = known_scorer(art.model, len(art.users), data.data.n_items)
    users, hist = data.gate.users, data.gate.history
    assert hist.typed
    torch.testing.assert_close(score(users, hist), art.model.score(users, hist))


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            NewEvent("x", "purchase", 1.0, 5.0),
            "unknown event type 'purchase': this model was trained with like, skip, watch",
        ),
        (NewEvent("x", "watch", 1.7, 5.0), "a 'watch' value must be in [0, 1]"),
    ],
)
def test_store_events_a_typed_model_cannot_read_exit_2(
    typed_model_dir: Path, tmp_path: Path, event: NewEvent, message: str
) -> None:
    """What the API answers with a 422 (another server may have logged it) stops a warm start
    with exit 2, naming the event's store sequence and session; nothing is written."""
    art = Artifact.load(typed_model_dir)
    event = NewEvent(art.items.external[0], event.event, event.value, event.ts)
    store = _typed_store(tmp_path / "state", art, event)
    r = _cli(typed_model_dir, store, tmp_path / "out")
    said = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert "event seq 61 (session odd)" in said and message in said
    assert not (tmp_path / "out").exists()


def test_a_content_model_reads_its_new_items_metadata(world: Interactions, tmp_path: Path) -> None:
    """Warm-starting a content-tower model: a cold item from the store gets its genres and year
    as features (not "unknown"), so the grown model scores it from what it is."""
    train, _ = _cut(world)
    params = {**SASREC, **QUIET, "item_features": ["genres", "year"]}
    model = SASRec(SASRecConfig.from_dict(params)).fit(train)
    folder = tmp_path / "content"
    Artifact.from_data(model, train, {"model": "sasrec", "dataset": "synthetic", "params": params}).save(
        folder
    )
    store = _store(tmp_path / "state", world)
    r = _cli(folder, store, tmp_path / "next", "--force")
    assert r.exit_code == 0, r.output
    nxt = Artifact.load(tmp_path / "next")
    cold = int(nxt.items.lookup[COLD["item_id"]])
    tower = nxt.model.net_.content  # type: ignore[attr-defined]
    vocab = nxt.model.content_vocab_  # type: ignore[attr-defined]
    assert int(tower.genres[cold + 1, 0]) == vocab.genres.index("drama") + 1
    assert int(tower.year[cold + 1]) > 0  # 2026: the last year bucket, not unknown


def test_a_typed_model_without_a_skip_type_retrains_without_the_skips(tmp_path: Path) -> None:
    """A typed model that never learned `skip` takes one at serving as an implicit negative, never
    as a pick; a warm retrain on a log with skips leaves them out (counted) instead of refusing."""
    world = generate_world(n_users=60, n_items=120, seed=2, mean_length=10.0, typed_events=True)
    rows = world.frame.filter(pl.col(Columns.EVENT) != "skip")
    no_skip = Interactions(rows, world.users, world.items, world.meta, world.name)  # its own types
    cfg = SASRecConfig(dim=8, max_len=10, epochs=1, actions=True, targets="positive", verbose=False)
    model = SASRec(cfg).fit(no_skip)
    assert model.trained_event_types == ("like", "watch")
    info = {"dataset": "synthetic", "model": "sasrec", "params": cfg.to_dict()}
    folder = Artifact.from_data(model, no_skip, info).save(tmp_path / "model")
    art = Artifact.load(folder)
    store = _typed_store(tmp_path / "state", art)
    r = _cli(folder, store, tmp_path / "next", "--force")
    assert r.exit_code == 0, r.output
    rec = _json(r.stdout)
    assert rec["method"] == "warm start"
    assert rec["new_events"] == 40 and rec["left_out_events"] == {"skip": 20}
    assert "no 'skip' type" in rec["left_out_why"]
    nxt = Artifact.load(tmp_path / "next")
    assert nxt.event_types == ("like", "watch") and "skip" not in nxt.histories.event_names
    user = art.users.external[0]
    u = int(art.users.to_internal([user], kind="user")[0])
    assert len(nxt.histories[u]) == len(art.histories[u]) + 2  # the watch and the like
    # a type it cannot take at all still stops it, as the API's 422 does
    bad = _typed_store(tmp_path / "bad", art, NewEvent(art.items.external[0], "purchase", 1.0, 5.0))
    r = _cli(folder, bad, tmp_path / "out")
    assert r.exit_code == 2 and "unknown event type 'purchase'" in " ".join(r.output.split())
