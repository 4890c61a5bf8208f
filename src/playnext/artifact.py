"""A trained model as a folder anyone can load: no pickle, diffable, self-describing.

    DIR/model.json, weights.safetensors   the model (config + tensors)
    DIR/artifact.json                     dataset, protocol, metrics, chosen params
    DIR/users.parquet, items.parquet      external ids and item metadata (internal order)
    DIR/histories.safetensors             every user's full history (CSR), for `--user`; for a
                                          typed log also each event (names in its metadata)

The folder is written beside the target and renamed into place, so an interrupted save never
leaves a half-written model where a good one was.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from safetensors.numpy import load, save_file

from playnext.data.events import check_event
from playnext.data.interactions import Columns, Histories, IdMap, Interactions
from playnext.data.request_time import At, Times, request_times
from playnext.errors import ConfigError, UnknownIdError
from playnext.io import commit_dir, fsync_dir
from playnext.models.base import Recommender
from playnext.ranking import Lists, rank
from playnext.rerank import ItemFeatures, RerankSpec


@dataclass
class Artifact:
    model: Recommender
    users: IdMap
    items: IdMap
    meta: pl.DataFrame
    histories: Histories
    info: dict[str, Any] = field(default_factory=dict)
    _features: ItemFeatures | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_data(cls, model: Recommender, data: Interactions, info: dict[str, Any]) -> Artifact:
        return cls(model, data.users, data.items, data.meta, data.sequences(), info)

    # ---- persistence ------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the folder beside `directory` and rename it into place (`playnext.io.commit_dir`):
        a failed save leaves the previous model folder as it was."""
        with commit_dir(directory) as tmp:
            self.model.save(tmp)
            (tmp / "artifact.json").write_text(json.dumps(self.info, indent=2, default=_json_default))
            pl.DataFrame({"user_id": self.users.external}).write_parquet(tmp / "users.parquet")
            self.meta.write_parquet(tmp / "items.parquet")
            h = self.histories
            arrays = {"indptr": h.indptr.astype(np.int64), "items": h.items.astype(np.int64)}
            names = None
            if h.events is not None and h.values is not None:
                arrays |= {"events": h.events.astype(np.int32), "values": h.values.astype(np.float32)}
                names = {"event_names": json.dumps(list(h.event_names))}
            save_file(arrays, str(tmp / "histories.safetensors"), metadata=names)
        return Path(directory).resolve()

    @classmethod
    def load(cls, directory: str | Path) -> Artifact:
        directory = Path(directory)
        if not directory.is_dir():
            raise ConfigError(f"{directory}: model directory not found")
        model = Recommender.load(directory)
        try:
            info = json.loads((directory / "artifact.json").read_text())
            users = IdMap(pl.read_parquet(directory / "users.parquet").get_column("user_id"))
            meta = pl.read_parquet(directory / "items.parquet")
            h, header = _read_tensors(directory / "histories.safetensors")
            names = json.loads(header.get("event_names", "[]"))
        except (OSError, ValueError, pl.exceptions.PolarsError) as e:
            raise ConfigError(f"{directory}: incomplete or corrupt model directory ({e})") from None
        items = IdMap(meta.get_column(Columns.ITEM_ID))
        if len(items) != model.n_items_:
            raise ConfigError(
                f"{directory}: items.parquet has {len(items)} items, model expects {model.n_items_}"
            )
        histories = Histories(h["indptr"], h["items"])
        if "events" in h:
            histories = histories.with_events(h["events"], h["values"], names)
        return cls(model, users, items, meta, histories, info)

    # ---- recommending -------------------------------------------------------------------------
    @property
    def event_types(self) -> tuple[str, ...]:
        """The event types the model reads as inputs (trained with `actions`), else none: the
        only types a history's events may name (API, CLI and batch apply this one rule)."""
        return self.model.event_types

    def typed_history(
        self, items: np.ndarray, events: Sequence[tuple[str | None, float | None]], where: str = "events"
    ) -> Histories:
        """One history row of internal `items` with its events `(type or None, value or None)`,
        checked against the model's types (`check_event`: another type is refused with the list)."""
        if len(events) != len(items):
            raise ConfigError(f"{where}: {len(events)} event(s) for {len(items)} history item(s)")
        known = self.event_types
        if not known:
            raise ConfigError(f"{where}: this {self.model.name} model was trained without event types")
        for n, (name, value) in enumerate(events, 1):
            check_event(name, value, known, where=f"{where} entry {n}")
        codes = np.array([-1 if e is None else known.index(e) for e, _ in events], dtype=np.int32)
        values = np.array([np.nan if v is None else v for _, v in events], dtype=np.float32)
        return Histories.from_lists([items]).with_events(codes, values, known)

    def recommend(
        self,
        *,
        user: str | None = None,
        history: list[str] | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        rerank: RerankSpec | None = None,
        events: Sequence[tuple[str | None, float | None]] | None = None,
        at: At | None = None,
    ) -> list[dict[str, Any]]:
        """Top-k items with titles for a known user or an anonymous history of external item ids."""
        return self.recommend_ranked(
            user=user, history=history, k=k, exclude_seen=exclude_seen, rerank=rerank, events=events, at=at
        )[0]

    def features(self) -> ItemFeatures:
        """What re-rankers know of this catalog: genres, kinds, training popularity, item vectors."""
        if self._features is None:
            pop = np.bincount(self.histories.items.astype(np.int64), minlength=len(self.items))
            self._features = ItemFeatures.from_meta(self.meta, pop, self.model.item_embeddings())
        return self._features

    def rank(
        self,
        users: np.ndarray,
        *,
        k: int,
        exclude_seen: bool = True,
        rerank: RerankSpec | None = None,
        allowed: np.ndarray | None = None,
        at: Times = None,
    ) -> Lists:
        """Lists for known users (internal ids) from their stored histories, asked at `at` (one
        time or one per user; default now: `playnext.data.request_time`): the one ranking path."""
        hist = self.histories.take(users).with_at(request_times(at, len(users)))
        return self.rank_histories(
            np.asarray(users, np.int64), hist, k=k, exclude_seen=exclude_seen, rerank=rerank, allowed=allowed
        )

    def rank_histories(
        self,
        users: np.ndarray,
        hist: Histories,
        *,
        k: int,
        exclude_seen: bool = True,
        rerank: RerankSpec | None = None,
        allowed: np.ndarray | None = None,
    ) -> Lists:
        """Lists for rows of (user or -1, history): model scores, then `playnext.ranking.rank`."""
        scores = self.model.score(users, hist)  # (B, I)
        return rank(
            scores,
            k,
            seen=hist if exclude_seen else None,
            allowed=allowed,
            rerank_spec=rerank,
            features=self.features() if rerank is not None and rerank.active else None,
            history=hist,
        )

    def recommend_ranked(
        self,
        *,
        user: str | None = None,
        history: list[str] | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        rerank: RerankSpec | None = None,
        events: Sequence[tuple[str | None, float | None]] | None = None,
        at: At | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """`recommend`, and what re-ranking did (None without `rerank`). `events` types the
        anonymous `history`, one `(type or None, value or None)` per item (see `typed_history`);
        a known user's stored events are read as they were trained. `at`: when it is asked
        (default now), read by a model trained with the request's time."""
        if (user is None) == (history is None):
            raise ConfigError("give exactly one of a user id or a history")
        if events is not None and history is None:
            raise ConfigError("events type an anonymous history; a user's own events are stored")
        if user is not None:
            uidx = self.users.to_internal([user], kind="user")
            hist = self.histories.take(uidx)
        else:
            uidx = np.array([-1])
            items = self.items.to_internal(history or [], kind="item")
            hist = Histories.from_lists([items]) if events is None else self.typed_history(items, events)
        hist = hist.with_at(request_times(at, 1))
        lists = self.rank_histories(uidx, hist, k=k, exclude_seen=exclude_seen, rerank=rerank)
        idx, values = lists.row(0)
        rows = self.meta[idx]
        out = []
        for r, (row, v) in enumerate(zip(rows.iter_rows(named=True), values.tolist(), strict=True), 1):
            out.append({"rank": r, **row, "score": float(v)})
        return out, lists.summaries[0] if lists.summaries else None

    def history_titles(self, user: str) -> list[str]:
        uidx = self.users.to_internal([user], kind="user")
        titles = self.meta.get_column(Columns.TITLE)
        return [str(titles[int(i)]) for i in self.histories.take(uidx).items]


CURRENT = "current"
VERSIONS = "versions"


def publish(model_dir: str | Path, root: str | Path, name: str | None = None) -> Path:
    """Copy a model folder into `ROOT/versions/NAME` and re-point `ROOT/current` at it atomically.

    Servers started with `--model-root ROOT` notice the new target and swap it in; the previous
    version stays on disk (a rollback is `publish` of it, or re-pointing the link by hand). The
    default NAME is unique (time, pid, a random part, the folder's name): two publishes in the
    same second, even of folders with the same name, never collide."""
    target = stage_version(model_dir, root, name)
    point_current(root, target)
    return target


def stage_version(model_dir: str | Path, root: str | Path, name: str | None = None) -> Path:
    """The first half of `publish`: copy the folder to `ROOT/versions/NAME`, `current` untouched
    (a server loads it from there before pointing anyone at it)."""
    src = Path(model_dir)
    if not (src / "model.json").is_file():
        raise ConfigError(f"{src}: not a model folder (no model.json)")
    versions = Path(root) / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    name = (
        name or f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}-{src.resolve().name}"
    )
    target = versions / name

    def refuse_existing(t: Path) -> None:  # checked again just before the rename
        if t.exists():
            raise ConfigError(f"{t}: a version with this name exists already")

    refuse_existing(target)
    with commit_dir(target, check=refuse_existing) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    return target


def point_current(root: str | Path, version: str | Path) -> None:
    """The second half of `publish`: re-point `ROOT/current` at `version` (a folder under
    `ROOT/versions`) atomically; a reader sees the old target or the new one."""
    root = Path(root)
    name = Path(version).name
    link_tmp = root / f".{CURRENT}.{os.getpid()}.{secrets.token_hex(3)}.tmp"
    os.symlink(Path(VERSIONS) / name, link_tmp)  # relative: the root can move as a whole
    try:
        os.replace(link_tmp, root / CURRENT)
    except BaseException:
        link_tmp.unlink(missing_ok=True)
        raise
    fsync_dir(root)


def current_model(root: str | Path) -> Path:
    """The folder `ROOT/current` points to (resolved), or a ConfigError saying how to make one."""
    link = Path(root) / CURRENT
    if not link.exists():
        raise ConfigError(
            f"{root}: no '{CURRENT}' model (publish one: playnext publish MODEL_DIR --root {root})"
        )
    return link.resolve()


def _read_tensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A safetensors file's arrays and metadata, read into memory (never memory-mapped: a file
    changed under a serving process must not take it down)."""
    data = path.read_bytes()
    try:
        arrays = load(data)
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
    except Exception as e:  # safetensors raises its own error types for a corrupt file
        raise ValueError(f"{path.name}: {e}") from None
    return arrays, header


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


__all__ = ["Artifact", "UnknownIdError", "current_model", "point_current", "publish", "stage_version"]
