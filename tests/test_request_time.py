"""The request's time at every entry point (issue #32): `POST /recommend`'s `at` (sessions too),
`model.recommend(at=...)`, `playnext recommend --at` and `--all-users --at` give the lists of
`Recommender.score` asked at that time, the same everywhere; a model trained with it says so
(model.json, the run record, /health, the CLI), its lists move with the time, a plain model's
do not; a bad `at` is a 422 naming the field, or one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import playnext as pn
from playnext import batch
from playnext.artifact import Artifact
from playnext.cli import app
from playnext.data.interactions import Histories, Interactions
from playnext.data.synthetic import generate_world
from playnext.errors import ConfigError
from playnext.models.base import Recommender
from playnext.models.registry import create
from playnext.serve import Settings, create_app

runner = CliRunner()
DAY = 86_400
TINY = {"dim": 16, "max_len": 12, "n_negatives": 32, "epochs": 2, "batch_size": 64, "dropout": 0.0}
QUIET = {"verbose": False, "patience": 0, "warmup_epochs": 0.0}


@pytest.fixture(scope="module")
def world() -> Interactions:
    return generate_world(n_users=80, n_items=120, seed=0)


def _saved(world: Interactions, root: Path, reference: str) -> Path:
    model = create("hstu", **TINY, **QUIET, time_reference=reference).fit(world)
    with torch.no_grad():  # a visible time bias: what is compared is the plumbing, not learning
        for block in model.net_.layers:  # type: ignore[attr-defined]
            block.rab.time_w.copy_(torch.linspace(-2, 2, len(block.rab.time_w)))
    return Artifact.from_data(model, world, {"model": "hstu", "request_time": model.uses_request_time}).save(
        root / reference
    )


@pytest.fixture(scope="module")
def dirs(world: Interactions, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("request-time")
    return {ref: _saved(world, root, ref) for ref in ("request", "query")}


def _client(model_dir: Path) -> TestClient:
    settings = Settings.model_validate({"text_encoder": "hashing", "token": "t", "cache_dir": None})
    return TestClient(create_app(Artifact.load(model_dir), settings))


def _last_time(model: Recommender, user: int) -> int:
    times = model.stored_times(user)
    assert times is not None
    return int(times[-1])


def test_a_request_time_model_says_so(dirs: dict[str, Path]) -> None:
    meta = json.loads((dirs["request"] / "model.json").read_text())
    assert meta["request_time"] is True and meta["config"]["time_reference"] == "request"
    assert "request_time" not in json.loads((dirs["query"] / "model.json").read_text())
    for ref, says in (("request", True), ("query", False)):
        with _client(dirs[ref]) as c:
            assert c.get("/health").json()["request_time"] is says


def test_served_scores_are_the_models_at_that_time(dirs: dict[str, Path], world: Interactions) -> None:
    art = Artifact.load(dirs["request"])
    user = 3
    uid = str(world.users.external[user])
    last = _last_time(art.model, user)
    with _client(dirs["request"]) as c:
        got = {}
        for at in (last + 60, last + 40 * DAY):
            r = c.post("/recommend", json={"user_id": uid, "k": 5, "explain": False, "at": at})
            assert r.status_code == 200, r.text
            got[at] = [(it["item_id"], it["score"]) for it in r.json()["items"]]
            hist = art.histories.take(np.array([user])).with_at(np.array([at]))
            want = art.model.score(np.array([user]), hist)[0]
            for item, score in got[at]:
                assert score == pytest.approx(float(want[int(art.items.to_internal([item])[0])]), abs=1e-5)
        assert got[last + 60] != got[last + 40 * DAY]
        iso = c.post(
            "/recommend", json={"user_id": uid, "k": 5, "explain": False, "at": "2030-01-01T00:00:00Z"}
        )
        unix = c.post("/recommend", json={"user_id": uid, "k": 5, "explain": False, "at": 1893456000})
        assert iso.json()["items"] == unix.json()["items"]


def test_a_sessions_request_reads_its_events_times(dirs: dict[str, Path], world: Interactions) -> None:
    art = Artifact.load(dirs["request"])
    items = [str(world.items.external[i]) for i in (5, 9, 14)]
    stamps = [1_600_000_000, 1_600_000_600, 1_600_003_000]
    with _client(dirs["request"]) as c:
        events = [{"item_id": i, "timestamp": t} for i, t in zip(items, stamps, strict=True)]
        assert c.post("/sessions/s1/events", json={"events": events}).status_code < 300
        for at in (stamps[-1] + 30, stamps[-1] + 20 * DAY):
            r = c.post("/recommend", json={"session_id": "s1", "k": 5, "explain": False, "at": at})
            assert r.status_code == 200, r.text
            hist = Histories.from_lists([art.items.to_internal(items)]).with_times(np.array(stamps))
            want = art.model.score(np.array([-1]), hist.with_at(np.array([at])))[0]
            for it in r.json()["items"]:
                idx = int(art.items.to_internal([it["item_id"]])[0])
                assert it["score"] == pytest.approx(float(want[idx]), abs=1e-5)


@pytest.mark.parametrize("ref", ["request", "query"])
def test_served_python_and_batch_agree_and_only_a_request_model_moves(
    ref: str, dirs: dict[str, Path], world: Interactions, tmp_path: Path
) -> None:
    model_dir = dirs[ref]
    art = Artifact.load(model_dir)
    users = [str(u) for u in world.users.external.to_list()]
    ats = [_last_time(art.model, 0) + 3600, _last_time(art.model, 0) + 60 * DAY]
    lists: dict[int, dict[str, list[str]]] = {}
    model = pn.load(model_dir)
    for at in ats:
        df = model.recommend(k=5, at=at)
        python = {
            u: g.sort("rank").get_column(df.columns[2]).to_list() for (u,), g in df.group_by(df.columns[0])
        }
        out = tmp_path / f"{at}.parquet"
        r = runner.invoke(
            app, ["recommend", "--model-dir", str(model_dir), "--all-users", "--out", str(out), "--k", "5",
                  "--at", str(at), "--json"],
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["at"] == (at if ref == "request" else None)
        rows = pl.read_parquet(out)
        batched = {u: g.sort("rank").get_column("item_id").to_list() for (u,), g in rows.group_by("user_id")}
        assert {str(u): v for u, v in python.items()} == batched
        with _client(model_dir) as c:
            for u in users[:5]:
                r = c.post("/recommend", json={"user_id": u, "k": 5, "explain": False, "at": at})
                assert [it["item_id"] for it in r.json()["items"]] == batched[u]
        one = json.loads(
            runner.invoke(
                app,
                [
                    "recommend",
                    "--model-dir",
                    str(model_dir),
                    "--user",
                    users[0],
                    "--k",
                    "5",
                    "--at",
                    str(at),
                    "--json",
                ],
            ).stdout
        )
        assert [it["item_id"] for it in one["items"]] == batched[users[0]]
        assert one["request_time"] is (ref == "request") and one["at"] == (at if ref == "request" else None)
        lists[at] = batched
    if ref == "request":
        assert lists[ats[0]] != lists[ats[1]]
    else:
        assert lists[ats[0]] == lists[ats[1]]


def test_per_user_times_in_python(dirs: dict[str, Path], world: Interactions) -> None:
    model = pn.load(dirs["request"])
    users = [str(u) for u in world.users.external.to_list()[:4]]
    last = [_last_time(model.recommender, i) for i in range(4)]
    soon, late = [t + 60 for t in last], [t + 50 * DAY for t in last]
    mixed = [soon[0], late[1], soon[2], late[3]]
    frames = {
        name: model.recommend(users=users, k=5, at=at)
        for name, at in (("s", soon), ("l", late), ("m", mixed))
    }

    def of(name: str, u: str) -> list[Any]:
        df = frames[name]
        return df.filter(pl.col(df.columns[0]) == u).sort("rank").get_column("score").to_list()

    assert [of("m", u) for u in users] == [
        of("s", users[0]),
        of("l", users[1]),
        of("s", users[2]),
        of("l", users[3]),
    ]
    assert of("s", users[1]) != of("l", users[1])  # the times matter, so the mix is per user
    with pytest.raises(ConfigError, match="at: 2 time"):
        model.recommend(users=users, k=5, at=soon[:2])


def test_a_bad_at_is_named(dirs: dict[str, Path], world: Interactions) -> None:
    uid = str(world.users.external[0])
    with _client(dirs["request"]) as c:
        for bad in ("yesterday", -5, True, 1e13):
            r = c.post("/recommend", json={"user_id": uid, "at": bad})
            assert r.status_code == 422, (bad, r.text)
            assert all(e["loc"][:2] == ["body", "at"] for e in r.json()["detail"]), r.text
    r = runner.invoke(
        app, ["recommend", "--model-dir", str(dirs["request"]), "--user", uid, "--at", "yesterday"]
    )
    assert r.exit_code == 2 and "--at" in r.output and "yesterday" in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


def test_a_resumed_batch_run_goes_on_at_the_time_it_started(dirs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "recs.parquet"
    job = batch.Job(k=5, chunk_users=20)

    def stop(i: int) -> None:
        raise KeyboardInterrupt  # killed after its first part

    with pytest.raises(KeyboardInterrupt):
        batch.recommend_all(dirs["request"], out, job, on_part=stop)
    started = json.loads((batch.parts_dir(out) / batch.MANIFEST).read_text())["at"]
    assert isinstance(started, int)
    with pytest.raises(batch.ResumeMismatchError, match="at"):
        batch.recommend_all(dirs["request"], out, batch.Job(k=5, chunk_users=20, at=started + 1))
    done = batch.recommend_all(dirs["request"], out, job)
    assert done.at == started and done.parts_reused == 1
    fresh = batch.recommend_all(
        dirs["request"], tmp_path / "again.parquet", batch.Job(k=5, chunk_users=20, at=started)
    )
    assert pl.read_parquet(out).equals(pl.read_parquet(fresh.path))
    plain = batch.recommend_all(dirs["query"], tmp_path / "plain.parquet", job)
    assert plain.at is None
