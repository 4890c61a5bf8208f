"""A sequence model's scoring path as ONNX, checked against PyTorch before it is kept.

    DIR/model.onnx        histories in, scores over every item out (dynamic batch axis)
    DIR/model.onnx.json   inputs, outputs, opset, and the check: max |onnx − torch| on real histories

The exported graph is the model's own scoring forward, wrapped only to take the padded tensors
its `score` builds: `items` (B, max_len) int64 holds each history's most recent items as
internal index + 1 (the row of items.parquet + 1), left-padded with 0, most recent last; HSTU
trained with timestamps also takes `times` (B, max_len) int64 seconds aligned with `items`,
and one trained with the request's time (`uses_request_time`) `at` (B,) int64: the unix second
each row is asked at (its last event's time or later; `HSTU.request_times` fills it); Caser
takes `users` (B,) int64 (internal index, -1 = anonymous) beside its window of items.
The output `scores` (B, n_items) float32 is ordered like items.parquet — seen items are not
masked (that is the caller's policy, as `exclude_seen` is here). A model trained with typed
events (`actions=true`) is refused: its action ids are no input of these graphs; so is one with
a learned repeat bonus (`repeat_bonus=true`), which the graphs do not add.

Before the file is renamed into place, onnxruntime scores real histories of the model folder's
users and the result is compared with `Recommender.score` (the PyTorch path serving uses), for a
request-time model each asked at a different time from its last event to 60 days after; a
difference above the tolerance (1e-4 of the largest score, at least 1) refuses the export and
leaves no model.onnx behind.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from playnext.artifact import Artifact
from playnext.data.interactions import Histories
from playnext.errors import ConfigError, PlaynextError
from playnext.io import atomic_write, sha256_file, write_json
from playnext.models.base import Recommender
from playnext.models.caser import Caser, CaserNet
from playnext.models.gru4rec import GRU4Rec, GRU4RecNet
from playnext.models.hstu import HSTU, HSTUNet
from playnext.models.neural import known_items
from playnext.models.parts.net import SequenceNet
from playnext.models.sequence import SequenceRecommender
from playnext.train import batches as B

TOLERANCE = 1e-4
OPSET = 18
CHECK_USERS = 1024
CHECK_BATCH = 256

Feed = dict[str, np.ndarray]


class ExportCheckError(PlaynextError):
    """The exported graph's scores differ from PyTorch's by more than the tolerance."""


@dataclass
class Graph:
    """What is exported: a module over padded tensors, its inputs, and how `score` fills them."""

    module: nn.Module
    inputs: dict[str, str]  # name → what it holds, in the order `module.forward` takes them
    feed: Callable[[np.ndarray, Histories], Feed]  # (users, histories) → inputs by name


@dataclass(frozen=True)
class Exported:
    path: Path
    info: dict[str, Any]


ITEMS = "(B, max_len) int64: internal item index + 1, left-padded with 0, most recent last"


class NextItemScores(nn.Module):
    """SASRec / HSTU: the net's own `encode_last` · `item_vectors`, as `SequenceRecommender._score`."""

    def __init__(self, net: SequenceNet, n_items: int) -> None:
        super().__init__()
        self.net, self.n_items = net, n_items

    def forward(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        h = self.net.encode_last(known_items(items, self.n_items), times)  # (B, D)
        return h @ self.net.item_vectors().T  # (B, I)


class RequestTimeScores(nn.Module):
    """HSTU trained with the request's time: `encode_last` asked at `at` · `item_vectors`."""

    def __init__(self, net: HSTUNet, n_items: int) -> None:
        super().__init__()
        self.net, self.n_items = net, n_items

    def forward(self, items: torch.Tensor, times: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        h = self.net.encode_last(known_items(items, self.n_items), times, at=at)  # (B, D)
        return h @ self.net.item_vectors().T  # (B, I)


class GRULastScores(nn.Module):
    """GRU4Rec: the net's own `encode_last_unpacked` · item vectors (its packed `encode` cannot be
    traced: torch.export fails on it and the TorchScript exporter silently drops the packing). The
    check against `GRU4Rec.score` after export is what holds the two paths together."""

    def __init__(self, net: GRU4RecNet, n_items: int) -> None:
        super().__init__()
        self.net, self.n_items = net, n_items

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        h = self.net.encode_last_unpacked(known_items(items, self.n_items))  # (B, D)
        return h @ self.net.item_vectors().T  # (B, I)


class CaserScores(nn.Module):
    """Caser: the net's own `encode(users, window)` · output embeddings + bias, as `Caser._score`."""

    def __init__(self, net: CaserNet, n_items: int) -> None:
        super().__init__()
        self.net, self.n_items = net, n_items

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        z = self.net.encode(users, known_items(items, self.n_items))  # (B, 2D)
        return z @ self.net.out_emb.weight.T + self.net.out_bias  # (B, I)


def _padded(model: SequenceRecommender | Caser, history: Histories) -> np.ndarray:
    width = model.config.max_len
    return B.left_pad(history, width, min_width=width)


def _sequence_graph(model: Recommender) -> Graph:
    assert isinstance(model, SequenceRecommender)
    n_items = int(model.n_items_ or 0)
    timed = isinstance(model, HSTU) and model.user_times_ is not None
    inputs = {"items": ITEMS}
    if timed:
        inputs["times"] = "(B, max_len) int64: seconds of each item in `items` (only differences count)"
    asked = model.uses_request_time
    if asked:
        inputs["at"] = "(B,) int64: unix seconds each row is asked at (not before its last event)"

    def feed(users: np.ndarray, history: Histories) -> Feed:
        out = {"items": _padded(model, history)}
        if isinstance(model, HSTU) and timed:
            times = model.times_for(users, history, model.config.max_len)
            assert times is not None
            out["times"] = times
            if asked:
                at = model.request_times(users, history, model.config.max_len)
                assert at is not None
                out["at"] = at
        return out

    if asked:
        assert isinstance(model.net_, HSTUNet)
        return Graph(RequestTimeScores(model.net_, n_items), inputs, feed)
    return Graph(NextItemScores(model.net_, n_items), inputs, feed)


def _gru_graph(model: Recommender) -> Graph:
    assert isinstance(model, GRU4Rec) and isinstance(model.net_, GRU4RecNet)
    module = GRULastScores(model.net_, int(model.n_items_ or 0))
    return Graph(module, {"items": ITEMS}, lambda users, history: {"items": _padded(model, history)})


def _caser_graph(model: Recommender) -> Graph:
    assert isinstance(model, Caser)
    inputs = {
        "users": "(B,) int64: internal user index (row of users.parquet), -1 = anonymous",
        "items": ITEMS,
    }

    def feed(users: np.ndarray, history: Histories) -> Feed:
        return {"users": users.astype(np.int64), "items": _padded(model, history)}

    return Graph(CaserScores(model.net_, int(model.n_items_ or 0)), inputs, feed)


GRAPHS: dict[str, Callable[[Recommender], Graph]] = {
    "sasrec": _sequence_graph,
    "hstu": _sequence_graph,
    "gru4rec": _gru_graph,
    "caser": _caser_graph,
}


def export_onnx(
    model_dir: str | Path,
    out: str | Path | None = None,
    *,
    check_users: int = CHECK_USERS,
    tolerance: float = TOLERANCE,
) -> Exported:
    """Export the model folder's scoring path to `out` (default DIR/model.onnx), check it with
    onnxruntime against PyTorch on up to `check_users` users' histories, write the sidecar."""
    model_dir = Path(model_dir)
    target = Path(out) if out is not None else model_dir / "model.onnx"
    sidecar = target.with_name(target.name + ".json")
    if check_users < 1:
        raise ConfigError(f"check_users must be >= 1, got {check_users}")
    art = Artifact.load(model_dir)
    model = art.model
    if model.name not in GRAPHS:
        raise ConfigError(
            f"{model_dir}: a {model.name} model has no ONNX export; supported: {', '.join(sorted(GRAPHS))}"
        )
    if model.uses_repeat_bonus:
        # the graphs end at state · item vectors: the bonus on seen items would be missing
        raise ConfigError(
            f"{model_dir}: this {model.name} model scores re-listens with a learned bonus "
            "(repeat_bonus=true), which the ONNX graph does not compute yet; serve it with "
            "`playnext serve`, or export a model trained without it"
        )
    if model.event_types:
        # the graphs take items (and times) only: a typed model's events would silently read as
        # untyped, so its export would score differently from the serving path
        raise ConfigError(
            f"{model_dir}: this {model.name} model was trained with typed events (actions=true), which "
            "the ONNX graph does not take yet; serve it with `playnext serve`, or export a model "
            "trained without actions"
        )
    ort = _onnxruntime()
    graph = GRAPHS[model.name](model)
    assert isinstance(model, SequenceRecommender | Caser)
    model.net_.to("cpu").eval()
    graph.module.eval()
    users = _check_users(len(art.users), check_users)
    info: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        t0 = time.perf_counter()
        example = graph.feed(users[:2], _asked(model, users[:2], art.histories.take(users[:2])))
        _torch_export(graph, example, tmp)
        seconds = time.perf_counter() - t0
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        diff, scale = _max_abs_diff(session, graph, model, art.histories, users)
        info.update(_describe(tmp, session, graph, model, model_dir))
        info.update(
            max_abs_diff=diff,
            score_scale=scale,
            tolerance=tolerance,
            n_checked=len(users),
            export_seconds=round(seconds, 3),
        )
        if not diff <= tolerance * scale:
            raise ExportCheckError(
                f"{target}: onnxruntime scores differ from PyTorch's by {diff:.3g} (> {tolerance:g} × "
                f"{scale:.3g}, the largest score) on {len(users)} users; nothing exported"
            )

    try:
        atomic_write(target, write)
    except ExportCheckError:
        # an older export of this folder no longer matches what was just refused: drop it too
        target.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        raise
    write_json(sidecar, info)
    return Exported(target, info)


def _onnxruntime() -> Any:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"ONNX export needs the onnx extra: pip install 'playnext[onnx]' ({e.name})"
        ) from None
    return onnxruntime


def _check_users(n_users: int, n: int) -> np.ndarray:
    """Up to `n` users, a fixed random sample (the same on every run), in index order."""
    if n >= n_users:
        return np.arange(n_users)
    return np.sort(np.random.default_rng(0).choice(n_users, size=n, replace=False))


def _torch_export(graph: Graph, example: Feed, path: Path) -> None:
    """torch.onnx.export with the dynamo exporter (torch.export, then onnxscript), batch axis
    dynamic. Why not the TorchScript exporter (`dynamo=False`): on torch 2.13 it fails outright
    on HSTU, and SASRec's export holds an EyeLike over booleans that onnxruntime cannot run; the
    dynamo exporter exported all four models here, exactly (differences ≤ 1e-6)."""
    args = tuple(torch.from_numpy(example[name]) for name in graph.inputs)
    batch = torch.export.Dim("batch", min=1)
    with _quiet():
        torch.onnx.export(
            graph.module,
            args,
            str(path),
            input_names=list(graph.inputs),
            output_names=["scores"],
            dynamic_shapes=tuple({0: batch} for _ in args),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter prints progress to stdout and warns about things that do not apply here;
    the CLI's stdout must stay one JSON object."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _max_abs_diff(
    session: Any, graph: Graph, model: Recommender, histories: Histories, users: np.ndarray
) -> tuple[float, float]:
    """The largest |onnxruntime − PyTorch| score difference, and the scale it is judged against:
    the largest |score|, at least 1 (float32 rounding grows with the scores: HSTU's are
    cosines over a temperature of 0.05)."""
    worst, scale = 0.0, 1.0
    for lo in range(0, len(users), CHECK_BATCH):
        idx = users[lo : lo + CHECK_BATCH]
        rows = _asked(model, idx, histories.take(idx))
        want = model.score(idx, rows).numpy()  # (b, I), the PyTorch path
        (got,) = session.run(["scores"], graph.feed(idx, rows))
        worst = max(worst, float(np.abs(got - want).max(initial=0.0)))
        scale = max(scale, float(np.abs(want).max(initial=0.0)))
    return worst, scale


def _asked(model: Recommender, users: np.ndarray, rows: Histories) -> Histories:
    """`rows` asked at times the check can tell apart, for a request-time model: each row from its
    last known event to 60 days after it (a fixed draw per user), so the `at` input is checked."""
    if not (isinstance(model, HSTU) and model.uses_request_time):
        return rows
    times = model.times_for(users, rows, model.config.max_len)
    assert times is not None
    gap = np.array([np.random.default_rng(int(u) + 1).integers(0, 60 * 86_400) for u in users], np.int64)
    return rows.with_at(times[:, -1] + gap)


def _describe(path: Path, session: Any, graph: Graph, model: Recommender, model_dir: Path) -> dict[str, Any]:
    import onnx
    import onnxruntime

    proto = onnx.load(str(path))
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    shapes = {i.name: (i.shape, i.type) for i in session.get_inputs()}
    return {
        "format": "onnx",
        "model": model.name,
        "opset": opset,
        "exporter": f"torch.onnx dynamo (torch {torch.__version__})",
        "onnxruntime": onnxruntime.__version__,
        "weights_sha256": sha256_file(model_dir / "weights.safetensors"),
        "n_items": model.n_items_,
        "max_len": model.max_len,
        "request_time": model.uses_request_time,
        "inputs": [
            {"name": n, "shape": shapes[n][0], "type": shapes[n][1], "holds": what}
            for n, what in graph.inputs.items()
        ],
        "outputs": [
            {
                "name": o.name,
                "shape": o.shape,
                "type": o.type,
                "holds": "(B, n_items) scores, items.parquet order",
            }
            for o in session.get_outputs()
        ],
    }


__all__ = ["GRAPHS", "TOLERANCE", "ExportCheckError", "Exported", "export_onnx"]
