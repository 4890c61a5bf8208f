"""`playnext recommend --all-users`: the Parquet file is every user's `Artifact.recommend`, scored
in bounded chunks, and a run killed with SIGKILL resumes to the identical file without
recomputing the parts it had committed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from playnext import batch
from playnext.artifact import Artifact
from playnext.cli import app
from playnext.data.synthetic import generate_world
from playnext.errors import PlaynextError
from playnext.models.registry import create

runner = CliRunner()
QUIET = {"verbose": False, "patience": 0, "warmup_epochs": 0.0}
TINY = {
    "sasrec": {"dim": 16, "max_len": 12, "epochs": 1, "batch_size": 64, **QUIET},
    "ease": {"l2": 50.0},
}


@pytest.fixture(scope="module", params=sorted(TINY))
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(request.param, tmp_path_factory.mktemp(request.param) / "model")


@pytest.fixture(scope="module")
def sasrec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save("sasrec", tmp_path_factory.mktemp("sasrec") / "model")


def _save(name: str, out: Path, **over: object) -> Path:
    world = generate_world(n_users=150, n_items=200, seed=0)
    model = create(name, **{**TINY[name], **over}).fit(world)
    return Artifact.from_data(model, world, {"model": name}).save(out)


def _stop_at(part: int) -> Callable[[int], None]:
    def stop(i: int) -> None:
        if i == part:
            raise KeyboardInterrupt

    return stop


def assert_same_ranking(got: list[str], got_scores: list[float], want: list[dict], tol: float = 1e-5) -> None:
    """Items and order equal, scores close; two items may swap only where their scores tie
    within `tol` (a chunk of users pads and sums in another order than a single user)."""
    assert len(got) == len(want)
    want_scores = [w["score"] for w in want]
    np.testing.assert_allclose(got_scores, want_scores, atol=tol, rtol=0)
    for r, (g, w) in enumerate(zip(got, want, strict=True)):
        if g != w["item_id"]:
            near = [x["item_id"] for x in want if abs(x["score"] - want_scores[r]) <= tol]
            assert g in near, f"rank {r + 1}: {g} instead of {w['item_id']}"


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_parquet_is_every_users_recommend(model_dir: Path, tmp_path: Path, exclude_seen: bool) -> None:
    out = tmp_path / "recs.parquet"
    k = 15
    done = batch.recommend_all(model_dir, out, batch.Job(k=k, exclude_seen=exclude_seen, chunk_users=32))
    table = pq.read_table(out)
    assert table.schema == batch.SCHEMA
    art = Artifact.load(model_dir)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    assert done.rows == len(frame) == len(art.users) * k and done.users == len(art.users)
    assert frame["user_id"].unique(maintain_order=True).to_list() == art.users.external.to_list()
    for user, rows in frame.group_by("user_id", maintain_order=True):
        want = art.recommend(user=str(user[0]), k=k, exclude_seen=exclude_seen)
        assert rows["rank"].to_list() == list(range(1, k + 1))
        assert_same_ranking(rows["item_id"].to_list(), rows["score"].to_list(), want)
        if exclude_seen:
            assert not set(rows["item_id"]) & set(_seen(art, user[0]))
    assert not batch.parts_dir(out).exists()


def test_a_typed_model_scores_each_users_stored_events(typed_model_dir: Path, tmp_path: Path) -> None:
    """A model trained with actions reads every user's stored events in the batch too: the file is
    the single-user `recommend` (which reads them), not the ranking of the untyped items."""
    out = tmp_path / "recs.parquet"
    batch.recommend_all(typed_model_dir, out, batch.Job(k=10, chunk_users=64))
    frame = pl.read_parquet(out)
    art = Artifact.load(typed_model_dir)
    assert art.histories.typed and art.event_types == ("like", "skip", "watch")
    for user, rows in frame.group_by("user_id", maintain_order=True):
        want = art.recommend(user=str(user[0]), k=10)
        assert_same_ranking(rows["item_id"].to_list(), rows["score"].to_list(), want)
    users = np.arange(len(art.users))
    hist = art.histories.take(users)
    untyped = art.model.score(users, type(hist)(hist.indptr, hist.items))  # every event untyped
    typed = art.model.score(users, hist)
    assert not np.allclose(typed.numpy(), untyped.numpy(), atol=1e-4)  # so the events did count


def test_reranked_parquet_is_every_users_reranked_recommend(model_dir: Path, tmp_path: Path) -> None:
    """Batch output re-ranks exactly as the single-user path (and the API) does."""
    from playnext.rerank import parse_spec

    spec = parse_spec(["calibrate:lambda=0.6", "mmr:lambda=0.3"])
    assert spec is not None
    out = tmp_path / "recs.parquet"
    k = 8
    batch.recommend_all(model_dir, out, batch.Job(k=k, chunk_users=40, rerank=spec))
    art = Artifact.load(model_dir)
    frame = pl.read_parquet(out)
    plain = pl.read_parquet(batch.recommend_all(model_dir, tmp_path / "plain.parquet", batch.Job(k=k)).path)
    assert not frame.equals(plain)  # the re-ranker changed some lists
    for user, rows in frame.group_by("user_id", maintain_order=True):
        want = art.recommend(user=str(user[0]), k=k, rerank=spec)
        assert rows["item_id"].to_list() == [w["item_id"] for w in want]
    # parts left by a re-ranked run that stopped are not reused by a run without re-ranking
    half = tmp_path / "half.parquet"
    with pytest.raises(KeyboardInterrupt):
        batch.recommend_all(model_dir, half, batch.Job(k=k, chunk_users=40, rerank=spec), on_part=_stop_at(0))
    with pytest.raises(PlaynextError, match="rerank"):
        batch.recommend_all(model_dir, half, batch.Job(k=k, chunk_users=40))


def _seen(art: Artifact, user: object) -> list[str]:
    uidx = art.users.to_internal([str(user)], kind="user")
    return [art.items.external[int(i)] for i in art.histories.take(uidx).items]


def test_scores_in_chunks_of_bounded_size(
    sasrec_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playnext.models.base import Recommender

    sizes: list[int] = []

    original = Recommender.score

    def spy(self: Recommender, users: np.ndarray, history: object) -> object:
        sizes.append(len(users))
        return original(self, users, history)  # type: ignore[arg-type]

    monkeypatch.setattr(Recommender, "score", spy)
    batch.recommend_all(sasrec_dir, tmp_path / "r.parquet", batch.Job(k=5, chunk_users=40))
    assert sizes == [40, 40, 40, 30]
    # automatic chunks: no more than 512 users, nor more scores than SCORE_BYTES allows
    assert batch.chunk_size(batch.Job(k=5), n_items=3706) == 512
    assert batch.chunk_size(batch.Job(k=5), n_items=10_000_000) == batch.SCORE_BYTES // (4 * 10_000_000)


KILLED = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    torch.set_num_threads(1)  # the same kernels as the uninterrupted run: bit-identical scores
    from playnext import batch
    def die(i):
        if i == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: as a kill -9
    batch.recommend_all(sys.argv[1], sys.argv[2], batch.Job(k=10, chunk_users=16), on_part=die)
    """
)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Float sums differ across thread counts: both runs use one, as the killed child does."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_thread")
def test_a_killed_run_resumes_to_the_identical_file(sasrec_dir: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.parquet"
    batch.recommend_all(sasrec_dir, whole, batch.Job(k=10, chunk_users=16))

    out = tmp_path / "recs.parquet"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED, str(sasrec_dir), str(out)], env=env, capture_output=True, timeout=300
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    parts = batch.parts_dir(out)
    committed = sorted(p.name for p in parts.glob("part-*.parquet"))
    assert committed == ["part-000000.parquet", "part-000001.parquet", "part-000002.parquet"]
    assert not out.exists()
    stamps = {n: (parts / n).stat().st_mtime_ns for n in committed}
    (parts / ".part-000003.parquet.x1y2.tmp").write_bytes(b"torn")  # a write cut short

    computed: list[int] = []

    def seen(i: int) -> None:
        computed.append(i)
        assert {n: (parts / n).stat().st_mtime_ns for n in committed} == stamps  # not rewritten
        assert not list(parts.glob(".*.tmp"))  # the torn write was swept

    done = batch.recommend_all(sasrec_dir, out, batch.Job(k=10, chunk_users=16), on_part=seen)
    assert computed == list(range(3, done.parts)) and done.parts_reused == 3
    assert pq.read_table(out).equals(pq.read_table(whole))
    assert not parts.exists()


def test_parts_of_another_run_are_refused_unless_restart(sasrec_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "recs.parquet"
    with pytest.raises(KeyboardInterrupt):
        batch.recommend_all(sasrec_dir, out, batch.Job(k=10, chunk_users=16), on_part=_stop_at(1))
    assert len(list(batch.parts_dir(out).glob("part-*.parquet"))) == 2

    args = ["recommend", "--model-dir", str(sasrec_dir), "--all-users", "--out", str(out)]
    r = runner.invoke(app, [*args, "--k", "20", "--chunk-users", "16"])
    assert r.exit_code == 2
    assert "another run" in r.output and "k: 10 → 20" in r.output and "--restart" in r.output
    assert len(list(batch.parts_dir(out).glob("part-*.parquet"))) == 2  # nothing discarded

    r = runner.invoke(app, [*args, "--k", "20", "--chunk-users", "16", "--restart", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["parts_reused"] == 0 and summary["rows"] == 150 * 20
    assert pq.read_table(out).num_rows == 150 * 20


def test_a_retrained_model_does_not_reuse_old_parts(sasrec_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "recs.parquet"
    with pytest.raises(KeyboardInterrupt):
        batch.recommend_all(sasrec_dir, out, batch.Job(k=5, chunk_users=50), on_part=_stop_at(0))
    other = _save("sasrec", tmp_path / "other", seed=1)
    with pytest.raises(batch.ResumeMismatchError, match="model_fingerprint"):
        batch.recommend_all(other, out, batch.Job(k=5, chunk_users=50))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--all-users needs --out"),
        (["--out", "x.parquet", "--user", "u1"], "takes no --user"),
        (["--out", "x.parquet", "--k", "0"], "--k"),
    ],
)
def test_bad_arguments_exit_2(sasrec_dir: Path, extra: list[str], message: str) -> None:
    r = runner.invoke(app, ["recommend", "--model-dir", str(sasrec_dir), "--all-users", *extra])
    assert r.exit_code == 2
    assert message in r.output


def test_out_without_all_users_exits_2_and_single_user_is_unchanged(sasrec_dir: Path) -> None:
    r = runner.invoke(
        app, ["recommend", "--model-dir", str(sasrec_dir), "--user", "u1", "--out", "x.parquet"]
    )
    assert r.exit_code == 2 and "--all-users" in r.output
    r = runner.invoke(
        app, ["recommend", "--model-dir", str(sasrec_dir), "--user", "u1", "--k", "3", "--json"]
    )
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)["items"]
    assert [g["item_id"] for g in got] == [
        w["item_id"] for w in Artifact.load(sasrec_dir).recommend(user="u1", k=3)
    ]


def test_a_second_run_on_the_same_output_is_refused_while_one_writes(
    sasrec_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "recs.parquet"
    refused: list[str] = []

    def meanwhile(i: int) -> None:
        if i == 0:
            for restart in (False, True):  # not even --restart pulls the folder from under it
                with pytest.raises(PlaynextError, match="another batch run") as e:
                    batch.recommend_all(sasrec_dir, out, batch.Job(k=5, chunk_users=50), restart=restart)
                refused.append(str(e.value))

    done = batch.recommend_all(sasrec_dir, out, batch.Job(k=5, chunk_users=50), on_part=meanwhile)
    assert len(refused) == 2 and done.rows == 150 * 5 and done.parts_reused == 0
