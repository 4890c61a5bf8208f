"""`playnext recommend --history … --events …` on a model trained with typed events: the events
reach the model as the API's session events do, and what the API refuses with a 422 (a type the
model was not trained with, a value outside its type's range) exits 2 naming the known types."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from playnext.artifact import Artifact
from playnext.cli import app

runner = CliRunner()


def _recommend(model_dir: Path, history: list[str], *extra: str) -> tuple[int, str]:
    args = ["recommend", "--model-dir", str(model_dir), "--history", ",".join(history), "--k", "20"]
    r = runner.invoke(app, [*args, "--json", *extra])
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def history(typed_model_dir: Path) -> list[str]:
    return Artifact.load(typed_model_dir).items.external[:3].to_list()


def test_events_reach_the_model_as_in_the_api(typed_model_dir: Path, history: list[str]) -> None:
    code, out = _recommend(typed_model_dir, history, "--events", "watch=1,like,skip=0")
    assert code == 0, out
    got = json.loads(out)["items"]
    art = Artifact.load(typed_model_dir)
    want = art.recommend(history=history, k=20, events=[("watch", 1.0), ("like", None), ("skip", 0.0)])
    assert [(g["item_id"], g["score"]) for g in got] == [(w["item_id"], w["score"]) for w in want]
    code, out = _recommend(typed_model_dir, history, "--events", "watch=1,like,watch=1")
    assert code == 0 and json.loads(out)["items"] != got  # the last event's type changes the list
    code, out = _recommend(typed_model_dir, history, "--events", ",,")  # all untyped: as no --events
    untyped = json.loads(_recommend(typed_model_dir, history)[1])["items"]
    assert code == 0 and json.loads(out)["items"] == untyped


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (
            "watch,purchase,like",
            "entry 2: unknown event type 'purchase': this model was trained with like, skip, watch",
        ),
        ("watch=1.7,,", "entry 1: a 'watch' value must be in [0, 1]"),
        ("like,skip", "2 event(s) for 3 history item(s)"),
        ("watch=lots,,", "entry 1 ('watch=lots'): the value is not a finite number"),
        ("=1,,", "a value needs a type"),
    ],
)
def test_bad_events_exit_2_naming_what_is_wrong(
    typed_model_dir: Path, history: list[str], events: str, message: str
) -> None:
    code, out = _recommend(typed_model_dir, history, "--events", events)
    assert code == 2, out
    assert message in " ".join(out.split()), out


def test_events_need_a_history_and_a_typed_model(typed_model_dir: Path, tmp_path: Path) -> None:
    user = Artifact.load(typed_model_dir).users.external[0]
    base = ["recommend", "--model-dir", str(typed_model_dir)]
    r = runner.invoke(app, [*base, "--user", user, "--events", "like"])
    assert r.exit_code == 2 and "--events types a --history" in r.output
    r = runner.invoke(app, [*base, "--all-users", "--out", str(tmp_path / "r.parquet"), "--events", "like"])
    assert r.exit_code == 2 and "--all-users reads each user's stored events" in " ".join(r.output.split())
    from playnext.data.synthetic import generate_world
    from playnext.models.registry import create

    world = generate_world(n_users=40, n_items=60, seed=1, typed_events=True)
    plain = Artifact.from_data(create("popular").fit(world), world, {}).save(tmp_path / "plain")
    item = world.items.external[0]
    r = runner.invoke(app, ["recommend", "--model-dir", str(plain), "--history", item, "--events", "like"])
    assert r.exit_code == 2 and "trained without event types" in r.output
