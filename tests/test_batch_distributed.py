"""`playnext recommend --all-users` on several processes: 2 gloo ranks on CPU write the same file,
byte for byte, as one process; a 2-rank run killed after some parts resumes on 1 process and on 2
(the manifest holds no world size), and rank 0's refusal of another job's parts stops every rank;
a run is refused while ranks of an earlier one still write.

Every run scores with one thread per process, as float sums depend on the thread count (the
batch module's docstring). Spawning ranks costs most of the time here: importing torch twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from playnext import batch
from playnext.artifact import Artifact
from playnext.data.synthetic import generate_world
from playnext.errors import PlaynextError
from playnext.models.registry import create
from playnext.train import distributed as D

TINY = {"dim": 16, "max_len": 12, "epochs": 1, "batch_size": 64, "verbose": False, "patience": 0}
JOB = batch.Job(k=10, chunk_users=16)  # 150 users: parts 0..9, the last one of 6 users
N_PARTS = 10


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    world = generate_world(n_users=150, n_items=200, seed=0)
    model = create("sasrec", **TINY, warmup_epochs=0.0).fit(world)
    return Artifact.from_data(model, world, {"model": "sasrec"}).save(tmp_path_factory.mktemp("m") / "model")


@pytest.fixture(scope="module")
def whole(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The one-process file, scored with one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        done = batch.recommend_all(model_dir, tmp_path_factory.mktemp("one") / "recs.parquet", JOB)
    finally:
        torch.set_num_threads(before)
    assert done.parts == N_PARTS and done.ranks == 1
    return done.path.read_bytes()


def test_nproc_2_writes_the_same_file_as_one_process(model_dir: Path, whole: bytes, tmp_path: Path) -> None:
    """`--nproc 2` relaunches under torch.distributed; rank 0 alone prints the summary."""
    out = tmp_path / "recs.parquet"
    cmd = [
        *(sys.executable, "-m", "playnext.cli", "recommend", "--model-dir", str(model_dir)),
        *("--all-users", "--k", "10", "--chunk-users", "16", "--out", str(out), "--nproc", "2", "--json"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[:3000] + "\n…\n" + done.stderr[-1500:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, done.stdout
    summary = json.loads(lines[0])
    assert summary["processes"] == 2 and summary["parts"] == N_PARTS and summary["rows"] == 150 * 10
    assert out.read_bytes() == whole
    assert not batch.parts_dir(out).exists()


def _killed(model_dir: str, out: str, parts_each: int) -> None:
    """Each rank: commit `parts_each` parts, wait for the other, then die as with kill -9."""
    computed: list[int] = []

    def die(i: int) -> None:
        computed.append(i)
        if len(computed) == parts_each:
            dist.barrier()  # both ranks have committed theirs: the parts left are known exactly
            os.kill(os.getpid(), signal.SIGKILL)

    batch.recommend_all(model_dir, out, JOB, on_part=die)


def _resumed(model_dir: str, out: str, k: int = JOB.k) -> None:
    computed: list[int] = []
    done = batch.recommend_all(model_dir, out, batch.Job(k=k, chunk_users=16), on_part=computed.append)
    rank, _ = D.group()
    Path(f"{out}.rank{rank}.json").write_text(json.dumps({"computed": computed, "rows": done.rows}))


def test_a_killed_two_rank_run_resumes_on_one_process_then_on_two(
    model_dir: Path, whole: bytes, tmp_path: Path
) -> None:
    out = tmp_path / "recs.parquet"
    with pytest.raises(mp.ProcessExitedException):
        D.run_local(_killed, 2, str(model_dir), str(out), 2, threads=1, backend_name="gloo")
    parts = batch.parts_dir(out)
    committed = sorted(p.name for p in parts.glob("part-*.parquet"))
    assert committed == [f"part-{i:06d}.parquet" for i in range(4)]  # rank 0: 0, 2; rank 1: 1, 3
    assert "world" not in (parts / batch.MANIFEST).read_text() and not out.exists()

    # one process takes over, and stops after two parts of its own
    computed: list[int] = []

    def stop_at_second(i: int) -> None:
        computed.append(i)
        if len(computed) == 2:
            raise KeyboardInterrupt

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(KeyboardInterrupt):
            batch.recommend_all(model_dir, out, JOB, on_part=stop_at_second)
    finally:
        torch.set_num_threads(before)
    assert computed == [4, 5]  # parts 0..3 are reused, not recomputed

    # rank 0's refusal reaches every rank: parts for another k are not mixed in
    with pytest.raises(mp.ProcessRaisedException, match="k: 10 → 20"):
        D.run_local(_resumed, 2, str(model_dir), str(out), 20, threads=1, backend_name="gloo")
    assert len(list(parts.glob("part-*.parquet"))) == 6

    # two ranks finish it: the parts still missing, dealt round-robin
    D.run_local(_resumed, 2, str(model_dir), str(out), threads=1, backend_name="gloo")
    reports = [json.loads(Path(f"{out}.rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["computed"] for r in reports] == [[6, 8], [7, 9]]
    assert [r["rows"] for r in reports] == [150 * 10] * 2  # every rank returns rank 0's count
    assert out.read_bytes() == whole
    assert not parts.exists()


def test_a_run_is_refused_while_ranks_of_an_earlier_one_still_write(model_dir: Path, tmp_path: Path) -> None:
    """A rank whose rank 0 has died holds `.ranks` shared while it writes: a new run, even with
    --restart, waits for it to be gone rather than mixing parts."""
    out = tmp_path / "recs.parquet"
    with pytest.raises(KeyboardInterrupt):
        batch.recommend_all(model_dir, out, JOB, on_part=_raise)
    with open(batch.parts_dir(out) / batch.RANKS, "a") as orphan:
        fcntl.flock(orphan, fcntl.LOCK_SH)
        for restart in (False, True):
            with pytest.raises(PlaynextError, match="still writing"):
                batch.recommend_all(model_dir, out, JOB, restart=restart)
    done = batch.recommend_all(model_dir, out, JOB)  # it is gone: the run resumes
    assert done.parts_reused == 1 and done.rows == 150 * 10


def _raise(i: int) -> None:
    raise KeyboardInterrupt
