"""The feedback loop: what the service heard since a model was trained becomes the next model.

    retrain("models/current", "state/", "models/next", RetrainOptions(), publish_root="models/")

1. CURRENT's `artifact.json` may carry a watermark `info["state"] = {"events_seq", "cold_seq"}`:
   the store's events and cold-start items after it are new (no watermark: all of them are).
2. CURRENT's histories + the new events (per user in arrival time, `(ts, seq)`) make the new data;
   the catalog grows by the new items, appended after the known ones so internal ids stay put.
   An event with a `user_id` belongs to that user (a new one is appended to the users); an event
   without one belongs to the user `session:<session_id>`. Events the model does not read at
   serving (`reads_event`: a skip, for a model without a skip type) are left out and counted.
3. The gate: each user's newest new event is held out; CURRENT and NEW both rank it (full
   ranking, seen items excluded, tie-exact `expected` metrics) from everything before it. NEW is
   trained without those events, so the comparison is fair; it is published only if its NDCG@10
   is at least CURRENT's, unless forced.
4. Warm start (default): CURRENT's network grows new item rows (`Recommender.extend_items`) —
   a cold item starts as the mean of its nearest known items by text, an item seen only in events
   as the mean of the known items it co-occurs with there, anything else as the mean item — and
   is fine-tuned at a fraction of the recipe's learning rate for a fraction of its budget. Models
   without a warm start (EASE, popularity: seconds to refit) are refit. `from_scratch` trains a
   fresh model with CURRENT's recipe params.

The new model's folder records the new watermark, CURRENT's path and the whole comparison.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from playnext.artifact import Artifact, publish
from playnext.data.events import check_event, reads_event
from playnext.data.interactions import META_SCHEMA, Columns, Histories, IdMap, Interactions
from playnext.data.split import EvalSet
from playnext.errors import ConfigError
from playnext.evaluate.protocol import evaluate
from playnext.experiment import environment
from playnext.models import registry
from playnext.models.base import Recommender
from playnext.ranking import cold_neighbours, item_texts
from playnext.state.store import (
    CATALOG_HEAD,
    DB_FILE,
    CatalogPrint,
    ColdItemRow,
    EventRow,
    StateError,
    StateStore,
)
from playnext.text import make_encoder

log = logging.getLogger("playnext.retrain")

GATE_METRIC = "NDCG@10"
SESSION_USER = "session:"  # prefix of the user an anonymous session's events form
# the warm start's learning rate = this × the recipe's: its cosine restarts from the recipe's peak
# and decays over the warm budget. Chosen on ML-1M validation (the gate's held-out events, never
# the test ones) by benchmarks/retrain_loop.py: 1.0 gave gate NDCG@10 0.1321 against 0.1163 (0.3)
# and 0.1137 (0.1) after a 15-minute first model (results/retrain_loop.json)
DEFAULT_LR_FACTOR = 1.0
WARM_BUDGET_FRACTION = 0.2  # the warm start's default budget (or epochs) as a share of the recipe's
TEXT_NEIGHBOURS = 10
CO_OCCURRING = 50  # at most this many co-occurring known items initialise an event-only item


EXIT_REFUSED = 3  # the CLI's exit code when the gate refuses NEW (2 stays for bad input)


@dataclass
class RetrainOptions:
    """How to retrain; `None` budgets take the defaults described on each field."""

    from_scratch: bool = False
    # warm start: WARM_BUDGET_FRACTION of CURRENT's recipe budget; from scratch: all of it
    budget_minutes: float | None = None
    epochs: int | None = None  # None: the recipe's (the budget usually ends training first)
    lr_factor: float = DEFAULT_LR_FACTOR
    text_encoder: str = "minilm"  # "minilm" | "hashing" | "none": cold items' text neighbours
    neighbours: int = TEXT_NEIGHBOURS
    force: bool = False

    def validate(self) -> None:
        if self.budget_minutes is not None and self.budget_minutes < 0:
            raise ConfigError(f"--budget-minutes must be >= 0, got {self.budget_minutes}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        if not (self.lr_factor > 0 and math.isfinite(self.lr_factor)):
            raise ConfigError(f"lr_factor must be > 0, got {self.lr_factor}")
        if self.text_encoder not in ("minilm", "hashing", "none"):
            raise ConfigError(f"text encoder must be minilm, hashing or none, got {self.text_encoder!r}")


# ---- the new data --------------------------------------------------------------------------------
@dataclass
class NewData:
    """CURRENT's world plus what the store added, split for the gate."""

    data: Interactions  # everything: the histories NEW keeps
    train: Interactions  # minus the gate's held-out events
    gate: EvalSet  # each user's newest new event, asked from everything before it
    n_known_items: int  # CURRENT's catalog: ids below it are CURRENT's
    init_from: list[list[int]]  # per new item, the known items it starts from
    init_by: dict[str, int]  # how the new items were initialised: text / co-occurrence / mean
    counts: dict[str, int]  # new events, users with new events, new users, new items, skipped


def open_store(where: str | Path) -> StateStore:
    """The store to read; unlike the server, retrain never creates one (a typo would read as
    'nothing new')."""
    s = str(where)
    if "://" not in s:
        folder = Path(s)
        if not (folder / DB_FILE).is_file() and not folder.is_file():
            raise StateError(f"{folder}: no state store there (expected {folder / DB_FILE})")
        if folder.is_file():
            s = f"sqlite:///{folder}"
    elif s.startswith("sqlite:///") and not Path(s[len("sqlite:///") :]).is_file():
        raise StateError(f"{s}: no such SQLite file")
    return StateStore.open(s)


def watermark(info: dict[str, Any]) -> tuple[int, int]:
    """(events_seq, cold_seq) CURRENT was trained up to; (0, 0) when it never saw the store."""
    state = info.get("state") or {}
    try:
        return int(state.get("events_seq", 0)), int(state.get("cold_seq", 0))
    except (TypeError, ValueError, AttributeError):
        raise ConfigError(f"artifact.json: malformed state watermark {state!r}") from None


def check_store_events(events: Sequence[EventRow], known: tuple[str, ...] | None, where: str) -> None:
    """Refuse store events a typed model cannot learn from: values outside their type's range,
    and, for a warm start (`known`: the types it was trained with, which its network's shape
    fixes), a type it was not trained with. The API refuses both with a 422 (a server of another
    model may have logged them); here they exit 2 naming the known types (`--from-scratch` learns
    new types). Each refusal names the event by its store sequence and session."""
    for e in events:
        at = f"{where}, event seq {e.seq} (session {e.session_id})"
        if e.event is None:
            continue
        check_event(e.event, e.value, known if known else (e.event,), where=at)


def readable_events(
    events: Sequence[EventRow], types: tuple[str, ...] | None
) -> tuple[list[EventRow], dict[str, int]]:
    """The events NEW trains on, and per type how many are left out: those serving never reads
    for a model of `types` (a skip without a skip type would be trained on as a pick). `None`: a
    fresh typed model, which learns every type the log has."""
    if types is None:
        return list(events), {}
    kept: list[EventRow] = []
    left: dict[str, int] = {}
    for e in events:
        if reads_event(e.event, types):
            kept.append(e)
        else:
            left[str(e.event)] = left.get(str(e.event), 0) + 1
    return kept, left


def merge(
    art: Artifact,
    events: Sequence[EventRow],
    cold: Sequence[ColdItemRow],
    *,
    encoder: str = "minilm",
    neighbours: int = TEXT_NEIGHBOURS,
) -> NewData:
    """CURRENT's histories with `events` appended per user in time order, over a catalog grown by
    the cold items and any unseen item the events name (raises ConfigError if none is usable)."""
    c = Columns
    usable = [e for e in events if e.item_id and e.item_id.strip()]
    skipped = len(events) - len(usable)
    if not usable:
        raise ConfigError(f"the {len(events)} new event(s) name no item: nothing to train on")
    n_known, n_old_users = len(art.items), len(art.users)
    # the catalog: known items, then cold items (store order), then items seen only in events
    new_meta: list[dict[str, Any]] = []
    ids: dict[str, int] = dict(art.items.lookup)
    for row in cold:
        if row.item_id in ids:
            continue
        ids[row.item_id] = n_known + len(new_meta)
        new_meta.append(
            {c.ITEM_ID: row.item_id, c.TITLE: row.title, c.GENRES: list(row.genres), c.YEAR: row.year}
            | {c.KIND: row.kind}
        )
    n_cold = len(new_meta)
    for e in sorted(usable, key=lambda e: e.seq):
        if e.item_id not in ids:
            ids[e.item_id] = n_known + len(new_meta)
            new_meta.append(
                {c.ITEM_ID: e.item_id, c.TITLE: e.item_id, c.GENRES: [], c.YEAR: None, c.KIND: None}
            )
    meta = pl.concat([art.meta.select(list(META_SCHEMA)), pl.DataFrame(new_meta, schema=META_SCHEMA)])
    items = IdMap(meta.get_column(c.ITEM_ID))

    # the users: known ones keep their ids; a new user (or session) is appended at first sight
    users: dict[str, int] = dict(art.users.lookup)
    new_users: list[str] = []
    per_user: dict[int, list[EventRow]] = {}
    for e in sorted(usable, key=lambda e: (e.ts, e.seq)):
        key = e.user_id if e.user_id else SESSION_USER + e.session_id
        if key not in users:
            users[key] = n_old_users + len(new_users)
            new_users.append(key)
        per_user.setdefault(users[key], []).append(e)
    user_map = IdMap([*art.users.external.to_list(), *new_users])

    # the rows: each user's old history, then their new events; all in one position order
    old = art.histories
    n_users = len(user_map)
    old_rows = np.zeros(n_users, dtype=np.int64)
    old_rows[: len(old)] = old.lengths
    new_rows = np.zeros(n_users, dtype=np.int64)
    for u, evs in per_user.items():
        new_rows[u] = len(evs)
    lengths = old_rows + new_rows
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    # old rows sit at the start of each user's new row: one vectorised scatter
    old_pos = np.repeat(indptr[: len(old)], old.lengths) + (
        np.arange(len(old.items)) - np.repeat(old.indptr[:-1], old.lengths)
    )
    item_col = np.empty(indptr[-1], dtype=np.int64)
    item_col[old_pos] = old.items
    # a typed log keeps its events and values (NaN: none given); untyped rows weigh 1
    event_col = np.full(int(indptr[-1]), None, dtype=object)
    value_col = np.ones(int(indptr[-1]), dtype=np.float32)
    if old.events is not None and old.values is not None:
        names = np.array([*old.event_names, None], dtype=object)
        event_col[old_pos] = names[old.events]  # code -1 → None
        value_col[old_pos] = old.values
    for u, evs in per_user.items():
        start = indptr[u] + old_rows[u]
        for j, e in enumerate(evs):
            item_col[start + j] = ids[e.item_id]
            event_col[start + j] = e.event
            value_col[start + j] = e.value if e.value is not None else (np.nan if e.event else 1.0)
    user_col = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    frame = pl.DataFrame(
        {
            c.USER: pl.Series(user_col, dtype=pl.Int32),
            c.ITEM: pl.Series(item_col, dtype=pl.Int32),
            # the artifact keeps order, not time: positions carry it (HSTU trains without Δt)
            c.TIMESTAMP: pl.Series([None] * len(user_col), dtype=pl.Int64),
            c.POSITION: pl.Series(np.arange(len(user_col)), dtype=pl.Int64),
            c.WEIGHT: pl.Series(value_col, dtype=pl.Float32),
            c.EVENT: pl.Series(event_col.tolist(), dtype=pl.String),
        }
    )
    data = Interactions(frame, user_map, items, meta, art.info.get("dataset", "custom"))

    # the gate: each user's newest new event, if anything precedes it
    gate_users = np.array(
        sorted(u for u in per_user if lengths[u] >= 2), dtype=np.int64
    )  # (G,) users with a question
    held = np.zeros(len(user_col), dtype=bool)
    held[indptr[gate_users + 1] - 1] = True
    train = data.replace(frame.filter(pl.Series(~held)))
    hist = train.sequences().take(gate_users)
    targets = Histories(np.arange(len(gate_users) + 1, dtype=np.int64), item_col[held])
    gate = EvalSet(gate_users, hist, targets, hist)

    init_from, init_by = _initial_rows(
        meta, n_known, n_cold, per_user, ids, encoder=encoder, neighbours=neighbours
    )
    counts = {
        "new_events": len(usable),
        "skipped_events": skipped,
        "users_with_new_events": len(per_user),
        "new_users": len(new_users),
        "new_items": len(new_meta),
        "new_cold_items": n_cold,
        "gate_users": len(gate_users),
    }
    return NewData(data, train, gate, n_known, init_from, init_by, counts)


def _initial_rows(
    meta: pl.DataFrame,
    n_known: int,
    n_cold: int,
    per_user: dict[int, list[EventRow]],
    ids: dict[str, int],
    *,
    encoder: str,
    neighbours: int,
) -> tuple[list[list[int]], dict[str, int]]:
    """For each new item, the known items its first embedding averages (empty: all of them)."""
    n_new = meta.height - n_known
    init: list[list[int]] = [[] for _ in range(n_new)]
    by = {"text": 0, "co-occurrence": 0, "mean": 0}
    if n_cold and encoder != "none" and n_known:
        texts = item_texts(meta)
        enc = make_encoder(encoder)
        assert enc is not None  # "none" was handled above
        known = enc.encode(texts[:n_known])  # (K, D), unit rows
        new = enc.encode(texts[n_known : n_known + n_cold])  # (C, D)
        top, _ = cold_neighbours(new, known, neighbours, temperature=1.0)  # (C, k), nearest first
        for j in range(n_cold):
            init[j] = [int(i) for i in top[j]]
        by["text"] = n_cold
    # event-only items (and cold ones without text): the known items of the same users' new events
    co: dict[int, dict[int, int]] = {}
    for evs in per_user.values():
        row = [ids[e.item_id] for e in evs]
        known_here = [i for i in row if i < n_known]
        for i in set(row):
            if i >= n_known and not init[i - n_known]:
                counts = co.setdefault(i, {})
                for k_ in known_here:
                    counts[k_] = counts.get(k_, 0) + 1
    for i, counts in co.items():
        if counts:
            best = sorted(counts, key=lambda k_: (-counts[k_], k_))[:CO_OCCURRING]
            init[i - n_known] = best
            by["co-occurrence"] += 1
    by["mean"] = sum(1 for r in init if not r)
    return init, by


# ---- training -------------------------------------------------------------------------------------
@dataclass
class Trained:
    model: Recommender
    method: str
    params: dict[str, Any]  # the config it was trained with
    seconds: float
    epochs: int | None


def recipe_params(art: Artifact) -> dict[str, Any]:
    """The params a from-scratch model of this lineage trains with: the first model's recipe
    (carried in `info["params"]` from model to model), else CURRENT's own config."""
    params = art.info.get("params")
    base = dict(params) if isinstance(params, dict) else art.model.config.to_dict()
    art.model.config_class.from_dict(base, where="artifact.json params")  # ConfigError if stale
    return base


def train_new(art: Artifact, new: NewData, options: RetrainOptions) -> Trained:
    """NEW: CURRENT warm-started on the grown catalog and fine-tuned, or a fresh model."""
    base = recipe_params(art)
    cls = registry.get(art.model.name)
    budget = float(base.get("max_minutes") or 0.0)
    neural = "max_minutes" in cls.config_class.field_types()
    run_only = {"patience": 0, "checkpoint_dir": "", "resume": False} if neural else {}
    t0 = time.perf_counter()
    if options.from_scratch or not cls.warm_startable:
        params = {**base, **run_only}
        if neural:
            params["max_minutes"] = options.budget_minutes if options.budget_minutes is not None else budget
            params["epochs"] = options.epochs or int(base.get("epochs", 1))
        model = cls(cls.config_class.from_dict(params)).fit(new.train)
        method = "from scratch" if options.from_scratch else f"refit ({cls.name} has no warm start)"
    else:
        model = art.model
        if getattr(model, "has_content", False):  # a content tower reads the new items' metadata
            model.extend_items(new.init_from, meta=new.data.meta[new.n_known_items :])  # type: ignore[call-arg]
        else:
            model.extend_items(new.init_from)
        epochs = int(base.get("epochs", 1))
        if options.budget_minutes is not None:
            minutes = options.budget_minutes
        else:
            minutes = WARM_BUDGET_FRACTION * budget
            if not budget and options.epochs is None:
                epochs = max(1, round(WARM_BUDGET_FRACTION * epochs))
        params = {
            **base,
            **run_only,
            "lr": float(base.get("lr", 1e-3)) * options.lr_factor,
            "epochs": options.epochs or epochs,
            "max_minutes": minutes,
            "warmup_epochs": min(float(base.get("warmup_epochs", 0.0)), 0.2),
            "schedule_epochs": 0,
        }
        model.config = cls.config_class.from_dict(params)
        model.fine_tune(new.train)
        method = "warm start"
    report = getattr(model, "report_", None)
    return Trained(
        model,
        method,
        model.config.to_dict(),
        time.perf_counter() - t0,
        report.epochs if report is not None else None,
    )


# ---- the gate -------------------------------------------------------------------------------------
def known_scorer(model: Recommender, n_known_users: int, n_items: int) -> Any:
    """Scores over the grown catalog from a model that knows only its own items and users: the
    others are dropped from histories, new users are anonymous (-1), new items score -inf."""
    n_known = int(model.n_items_ or 0)

    def score(users: np.ndarray, hist: Histories) -> torch.Tensor:
        keep = hist.items < n_known
        lengths = np.bincount(hist.row_ids()[keep], minlength=len(hist))
        indptr = np.zeros(len(hist) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        known = hist.select(keep, indptr)  # events kept: a typed model reads them as it serves
        out = torch.full((len(users), n_items), float("-inf"))
        out[:, :n_known] = model.score(np.where(users < n_known_users, users, -1), known)
        return out

    return score


def judge(scorer: Any, new: NewData) -> dict[str, float]:
    """HR@10 and NDCG@10 of the gate's held-out events (full ranking, seen excluded, expected ties)."""
    res = evaluate(scorer, new.gate, new.data.n_items, ks=(10,), ties="expected")
    return {k: res.metrics[k] for k in ("HR@10", "NDCG@10")}


# ---- the command ---------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What `retrain` did; `refused` and a None `model_dir` (nothing new) are not errors."""

    record: dict[str, Any]
    model_dir: Path | None = None
    published: Path | None = None
    refused: bool = False
    message: str = ""


def retrain(
    current: str | Path,
    store: str | Path,
    out: str | Path,
    options: RetrainOptions | None = None,
    *,
    publish_root: str | Path | None = None,
) -> Outcome:
    """Train NEW from CURRENT and the store's new events, save it to `out`, gate it, publish it.

    Bad input (an unreadable model folder, an unreachable store, events naming nothing usable)
    raises a PlaynextError before anything is written; nothing under `current` or `publish_root`
    is ever modified except `publish_root/current` and a new `publish_root/versions/<name>`.
    """
    options = options or RetrainOptions()
    options.validate()
    t0 = time.perf_counter()
    current = Path(current).resolve()
    out = Path(out).resolve()
    if out == current:
        raise ConfigError("--out must differ from --model-dir: CURRENT stays as it was")
    art = Artifact.load(current)
    after_events, after_cold = watermark(art.info)
    db = open_store(store)
    try:
        # a log of another catalog's ids would be merged as new items and wrong histories
        head = art.items.external.head(CATALOG_HEAD).to_list()
        db.check_catalog(CatalogPrint.of(head, len(art.items), art.info.get("dataset")))
        events_seq, cold_seq = db.last_seq(), db.cold_seq()  # the new watermark, read first
        events = [e for e in db.events(after_seq=after_events) if e.seq <= events_seq]
        cold = [r for r in db.cold_items(after_seq=after_cold) if r.seq <= cold_seq]
        where = db.where
    finally:
        db.close()
    mark = {"events_seq": events_seq, "cold_seq": cold_seq}
    typed = art.model.trained_event_types
    warm = not options.from_scratch and art.model.warm_startable
    # the log as serving reads it for this lineage; a fresh typed model learns any type
    events, left_out = readable_events(events, None if typed and not warm else typed)
    unread = {
        "left_out_events": left_out,
        "left_out_why": (
            f"{art.model.name} has no {' or '.join(map(repr, left_out))} type: serving never reads "
            "one as a pick, it only keeps the item out of that session's lists"
        )
        if left_out
        else None,
    }
    counted = ", ".join(f"{n} {t}" for t, n in left_out.items())
    left_note = f"; left out {counted} event(s) {art.model.name} does not read" if left_out else ""
    if not events:
        what = "new events it reads" if left_out else "new events"
        msg = f"no {what} in {where} since seq {after_events}: nothing to retrain{left_note}"
        if cold:
            msg += f" ({len(cold)} new cold item(s) wait for events)"
        record = {"status": "nothing new", "state": mark, "current": str(current), **unread}
        return Outcome(record, message=msg)

    if typed:  # values are a typed model's inputs; an untyped lineage only logs them
        check_store_events(events, typed if warm else None, where)
    new = merge(art, events, cold, encoder=options.text_encoder, neighbours=options.neighbours)
    n_old_users = len(art.users)
    if not len(new.gate):
        raise ConfigError("no user has an event before their newest one: nothing to compare on")
    # CURRENT's numbers first: a warm start grows and trains CURRENT's own model object
    current_metrics = judge(known_scorer(art.model, n_old_users, new.data.n_items), new)
    trained = train_new(art, new, options)
    new_metrics = judge(known_scorer(trained.model, new.data.n_users, new.data.n_items), new)
    better = new_metrics[GATE_METRIC] >= current_metrics[GATE_METRIC]
    comparison = {
        "status": "accepted" if better else ("forced" if options.force else "refused"),
        "method": trained.method,
        "gate": {
            "metric": GATE_METRIC,
            "held_out": "each user's newest new event, ranked from everything before it",
            "protocol": "full ranking, seen items excluded, expected ties",
            "users": len(new.gate),
        },
        "current_metrics": current_metrics,
        "new_metrics": new_metrics,
        "metrics": new_metrics,
        "train_seconds": trained.seconds,
        "seconds": time.perf_counter() - t0,
        "epochs": trained.epochs,
        "params": trained.params,
        "lr_factor": options.lr_factor if trained.method == "warm start" else None,
        "budget_minutes": trained.params.get("max_minutes"),
        "init_by": new.init_by,
        **new.counts,
        **unread,
        "n_items": new.data.n_items,
        "n_users": new.data.n_users,
        "state": mark,
        "previous_state": {"events_seq": after_events, "cold_seq": after_cold},
        "current": str(current),
        "store": where,
        "environment": environment(),
    }
    info = {
        **{k: v for k, v in art.info.items() if k not in ("retrain", "model_dir")},
        "model": art.model.name,
        "params": recipe_params(art),  # the lineage's recipe: what a from-scratch retrain uses
        "state": mark,
        "retrained_from": str(current),
        "retrain": comparison,
    }
    model_dir = Artifact(
        trained.model, new.data.users, new.data.items, new.data.meta, new.data.sequences(), info
    ).save(out)
    outcome = Outcome(comparison, model_dir=model_dir)
    numbers = (
        f"{GATE_METRIC} new {new_metrics[GATE_METRIC]:.4f} vs current {current_metrics[GATE_METRIC]:.4f}"
    )
    if not better and not options.force:
        outcome.refused = True
        outcome.message = f"refused: NEW ranks the held-out events worse ({numbers}); --force publishes it"
        return outcome
    if publish_root is not None:  # the one publish: servers with --model-root ROOT swap it in
        outcome.published = publish(model_dir, publish_root)
    outcome.message = f"{comparison['status']}: {numbers}{left_note}" + (
        f"; published to {outcome.published}" if outcome.published else ""
    )
    comparison["published"] = str(outcome.published) if outcome.published else None
    return outcome


__all__ = [
    "EXIT_REFUSED",
    "Outcome",
    "RetrainOptions",
    "known_scorer",
    "merge",
    "publish",
    "readable_events",
    "retrain",
]
