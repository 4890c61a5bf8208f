"""`StateStore`: sessions, the event log, cold-start items and run metadata in one SQL database.

Every server worker and `playnext retrain` open the same store, so a session written through one
process is read by the next request on any other, and what the service hears reaches the next
model. Two back ends, one code path (SQLAlchemy Core):

    StateStore.open("state/")                          SQLite in WAL mode: state/state.db
    StateStore.open("postgresql://user@host/db")       PostgreSQL through psycopg 3

A write method returns only after its transaction committed (SQLite with `synchronous=FULL`, so
the commit is on disk, not just in the OS cache), which is what lets the server answer 2xx.

Bounds, all deterministic:
- sessions: at most `max_sessions`; a new session evicts the least recently updated ones (ties:
  smallest id). Eviction drops the session, not its events: they stay in the log for retraining.
- a session's view holds its last `max_session_events` events (by arrival order);
- the event log keeps the last `max_log_events` events (oldest sequence numbers dropped first);
- cold-start items: at most `max_cold_items`; one more is refused (409), never evicted.

A store that cannot be used raises `StateError` (the server's 503) rather than acknowledge a write
it may lose: a SQLite file deleted or replaced under a running server is noticed at the next
transaction (its device and inode are those the store opened, checked before and after each
commit); the schema must be exactly this playnext's (tables, columns, version); `check()` is
/health's probe. A store also records the catalog it serves (`CatalogPrint`) and refuses a model
of another: a session's item ids mean nothing in another model's catalog.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine

from playnext.errors import PlaynextError
from playnext.state.wal import Pinned, WalGuard

SCHEMA_VERSION = 1
DB_FILE = "state.db"
SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite file
CATALOG_KEY = "catalog"  # the meta row naming the catalog this store's ids belong to
CATALOG_HEAD = 256  # item ids a CatalogPrint keeps: enough to tell two catalogs apart
PROBE_KEY = "health.probe"  # the meta row /health's write probe touches
PROBE_BUSY_MS = 1_000  # how long the probe waits for the write lock before calling the store locked
MIN_FREE_BYTES = 1 << 20  # less free space than this beside a SQLite file: /health says disk full
GONE = " (nothing more is acknowledged; a restart opens what the path holds now)"
WAL_AUTOCHECKPOINT = 128  # pages: bounds the committed log every write re-reads (SQLite's default 1000)
QUICK_CHECK_EVERY_S = 5.0  # the least time between two `PRAGMA quick_check`s of one process
QUICK_CHECK_SHARE = 50  # and at least 50 times the last one's duration: at most 2 % of a core
QUICK_CHECK_WAIT_S = 0.25  # how long /health waits for a quick_check it started (small stores: all of it)
SQLITE_DAMAGED = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB: the file is damaged, no retry helps
SESSIONS_LOCK = 7061727  # PostgreSQL advisory lock serialising session writes (SQLite: BEGIN IMMEDIATE)

_meta = sa.MetaData()
_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only

META = sa.Table(
    "playnext_meta",
    _meta,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
SESSIONS = sa.Table(
    "playnext_sessions",
    _meta,
    sa.Column("session_id", sa.String(128), primary_key=True),
    sa.Column("user_id", sa.String(256), nullable=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
    sa.Column("n_events", sa.Integer, nullable=False),
    sa.Index("playnext_sessions_lru", "updated", "session_id"),
)
EVENTS = sa.Table(
    "playnext_events",
    _meta,
    sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
    sa.Column("session_id", sa.String(128), nullable=False),
    sa.Column("user_id", sa.String(256), nullable=True),
    sa.Column("item_id", sa.String(256), nullable=False),
    sa.Column("event", sa.String(64), nullable=True),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Index("playnext_events_session", "session_id", "seq"),
)
COLD_ITEMS = sa.Table(
    "playnext_cold_items",
    _meta,
    sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.String(256), nullable=False, unique=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("genres", sa.Text, nullable=False),  # JSON list
    sa.Column("year", sa.Integer, nullable=True),
    sa.Column("ts", sa.Float, nullable=False),
)


class StateError(PlaynextError):
    """The store cannot be used (unreachable, locked, corrupt, deleted, foreign schema): the server
    answers 503.

    The message names the store (file path or URL, never a password), for logs and the CLI;
    `reason` says what went wrong without it, for answers to clients who may not see the server."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason if reason is not None else message


class StateConflict(PlaynextError):
    """A write the store refuses on its content (an id that exists, a full table): 409."""


@dataclass(frozen=True)
class Limits:
    max_sessions: int = 10_000
    max_session_events: int = 200
    max_cold_items: int = 10_000
    max_log_events: int = 5_000_000


@dataclass(frozen=True)
class NewEvent:
    """An event as a client sends it; `ts` defaults to the time the store receives it."""

    item_id: str
    event: str | None = None
    value: float | None = None
    ts: float | None = None


@dataclass(frozen=True)
class EventRow:
    seq: int
    session_id: str
    user_id: str | None
    item_id: str
    event: str | None
    value: float | None
    ts: float


@dataclass(frozen=True)
class SessionState:
    id: str
    user_id: str | None
    created: float
    updated: float
    events: list[EventRow] = field(default_factory=list)  # the last max_session_events, oldest first

    def item_ids(self) -> list[str]:
        return [e.item_id for e in self.events]


@dataclass(frozen=True)
class CatalogPrint:
    """The catalog a store's item ids belong to: its first `CATALOG_HEAD` item ids, in order.

    Retraining appends new items after the known ones (`playnext.retrain`), so every model of one
    lineage — its parents after a rollback, its retrained children — starts with the same ids;
    another dataset's model does not."""

    head: tuple[str, ...]
    n_items: int
    dataset: str | None = None

    @classmethod
    def of(cls, first_ids: Sequence[object], n_items: int, dataset: str | None = None) -> CatalogPrint:
        """From the catalog's first item ids (at least `CATALOG_HEAD` of them, or all) and its size."""
        return cls(tuple(str(i) for i in first_ids[:CATALOG_HEAD]), n_items, dataset)

    def matches(self, other: CatalogPrint) -> bool:
        """True when one catalog starts as the other does (the same lineage)."""
        k = min(len(self.head), len(other.head))
        return k > 0 and self.head[:k] == other.head[:k]

    def describe(self) -> str:
        name = f"dataset {self.dataset!r}, " if self.dataset else ""
        first = ", ".join(repr(i) for i in self.head[:3])
        return f"{name}{self.n_items} items, the first {first}"

    def to_json(self) -> dict[str, Any]:
        return {"head": list(self.head), "n_items": self.n_items, "dataset": self.dataset}

    @classmethod
    def from_json(cls, d: Any) -> CatalogPrint:
        if not isinstance(d, dict) or not isinstance(d.get("head"), list):
            raise ValueError(f"not a catalog record: {d!r:.80}")
        return cls(tuple(map(str, d["head"])), int(d.get("n_items", len(d["head"]))), d.get("dataset"))


@dataclass(frozen=True)
class ColdItemRow:
    seq: int
    item_id: str
    title: str
    kind: str
    genres: list[str]
    year: int | None
    ts: float


class StateStore:
    """One database shared by every worker; each method is one transaction."""

    def __init__(
        self,
        url: str,
        limits: Limits | None = None,
        *,
        sqlite_path: Path | None = None,
        busy_ms: int = 10_000,
    ) -> None:
        self.url = url
        self.limits = limits or Limits()
        self.kind = "sqlite" if url.startswith("sqlite") else "postgresql"
        if self.kind == "sqlite" and sqlite_path is None:
            db = sa.engine.make_url(url).database
            sqlite_path = Path(db) if db and db != ":memory:" else None
        self.sqlite_path = sqlite_path
        self.busy_ms = busy_ms
        self._file_id: tuple[int, int] | None = None  # (device, inode) of the SQLite file opened
        self._failing: str | None = None  # why the last write failed, until one succeeds
        self._schema_mark: tuple[object, ...] | None = None  # the schema as last checked exact
        self._damaged: str | None = None  # the file or its log found damaged: no write until a restart
        self._pinned = Pinned()  # the SQLite files, read without dropping SQLite's locks
        self._wal = WalGuard(sqlite_path, self._pinned) if sqlite_path is not None else None
        self._qc_thread: threading.Thread | None = None
        self._qc_next = 0.0  # monotonic time the next quick_check is due
        self._read, self._write = _engines(url, self.kind, busy_ms)
        self._probe = _probe_engine(url, self.kind)  # /health's own: never queued behind writers
        self._waits: dict[int, float] = {}  # writes waiting for the lock: their start (monotonic)
        self._waits_lock = threading.Lock()
        self._wait_ids = itertools.count()
        with self._guard("open"), self._write.begin() as conn:
            if self.kind == "postgresql":  # several workers may create the schema at once
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7061726)"))
            self._prepare(conn)
            self._schema_mark = _schema_mark(conn, self.kind)
        if self.sqlite_path is not None:
            st = os.fstat(self._pinned.fd(str(self.sqlite_path)))
            self._file_id = (st.st_dev, st.st_ino)

    @classmethod
    def open(cls, where: str | Path, limits: Limits | None = None) -> StateStore:
        """A folder (SQLite `DIR/state.db`, created if missing) or a `sqlite:///…`/`postgresql://…` URL."""
        s = str(where)
        if s.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            url = "postgresql+psycopg://" + s.split("://", 1)[1]
            return cls(url, limits)
        if s.startswith("sqlite:///"):
            path = Path(s[len("sqlite:///") :])
        elif "://" in s:
            raise StateError(f"--store {s}: use a folder, sqlite:///FILE or postgresql://…")
        else:
            folder = Path(s)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StateError(f"{folder}: cannot create the state folder ({e.strerror})") from None
            path = folder / DB_FILE
        return cls(f"sqlite:///{path}", limits, sqlite_path=path)

    def close(self) -> None:
        if self._qc_thread is not None:
            self._qc_thread.join(10)
        self._read.dispose()
        self._write.dispose()
        self._probe.dispose()
        self._pinned.close()

    @property
    def where(self) -> str:
        """The store's location for messages and /health, never with a password."""
        if self.sqlite_path is not None:
            return str(self.sqlite_path)
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    # ---- sessions and events ---------------------------------------------------------------
    def append(self, session_id: str, events: Sequence[NewEvent], user_id: str | None = None) -> SessionState:
        """Log `events` and add them to the session (created if new); returns the session as committed.

        The time is read once the transaction holds the session lock, and never runs behind the
        newest session's, so `updated` follows commit order; the session written is never the
        one evicted, so a committed write always returns its session."""
        with self._tx("write") as conn:
            if self.kind == "postgresql":  # as SQLite's BEGIN IMMEDIATE: one session writer at a time
                conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({SESSIONS_LOCK})"))
            newest = conn.execute(sa.select(sa.func.max(SESSIONS.c.updated))).scalar_one_or_none()
            now = time.time()
            if newest is not None and now <= newest:  # a clock stepped back, or skew between hosts
                now = float(newest) + 1e-6
            rows = [
                {
                    "session_id": session_id,
                    "user_id": user_id,
                    "item_id": e.item_id,
                    "event": e.event,
                    "value": e.value,
                    "ts": e.ts if e.ts is not None else now,
                }
                for e in events
            ]
            ins = _insert(self.kind)(SESSIONS).values(
                session_id=session_id, user_id=user_id, created=now, updated=now, n_events=len(rows)
            )
            ins = ins.on_conflict_do_update(
                index_elements=[SESSIONS.c.session_id],
                set_={
                    "updated": now,
                    "n_events": SESSIONS.c.n_events + len(rows),
                    "user_id": sa.func.coalesce(ins.excluded.user_id, SESSIONS.c.user_id),
                },
            ).returning(SESSIONS.c.created)
            created = conn.execute(ins).scalar_one()
            if rows:  # the new sequence numbers come back with the insert: the log bound needs the top one
                seqs = conn.execute(EVENTS.insert().returning(EVENTS.c.seq), rows).scalars().all()
                self._trim_log(conn, max(seqs))
            if created == now:
                self._evict_sessions(conn, keep=session_id)
            state = self._session(conn, session_id)
            if state is None:  # cannot happen (the session is kept); fail before the commit, never after
                raise StateError(f"state store {self.where}: session {session_id} vanished while written")
        return state

    def session(self, session_id: str) -> SessionState | None:
        with self._reading("read") as conn:
            return self._session(conn, session_id)

    def delete_session(self, session_id: str) -> bool:
        """Forget a session and its events (the client asked for it: they leave the log too)."""
        with self._tx("write") as conn:
            n = conn.execute(SESSIONS.delete().where(SESSIONS.c.session_id == session_id)).rowcount
            conn.execute(EVENTS.delete().where(EVENTS.c.session_id == session_id))
        return bool(n)

    def n_sessions(self) -> int:
        with self._reading("read") as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(SESSIONS)).scalar_one())

    def events(self, after_seq: int = 0, limit: int | None = None) -> list[EventRow]:
        """The log after `after_seq`, in arrival order (the feedback loop's input)."""
        q = sa.select(EVENTS).where(EVENTS.c.seq > after_seq).order_by(EVENTS.c.seq)
        if limit is not None:
            q = q.limit(limit)
        with self._reading("read") as conn:
            return [_event(r) for r in conn.execute(q)]

    def last_seq(self) -> int:
        """The newest event's sequence number (0 for an empty log): a retrain's watermark."""
        with self._reading("read") as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(EVENTS.c.seq), 0))).scalar_one())

    def item_counts(self, item_ids: Sequence[str], after_seq: int = 0) -> tuple[dict[str, int], int]:
        """Events of each of `item_ids` logged after `after_seq`, and the watermark they run to.

        Callers keep a running count by passing the returned watermark next time: each call reads
        only the newest events (a primary-key range), however long the log."""
        with self._reading("read") as conn:
            top = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(EVENTS.c.seq), 0))).scalar_one())
            if not item_ids or top <= after_seq:
                return {}, max(top, after_seq)
            q = (
                sa.select(EVENTS.c.item_id, sa.func.count())
                .where(EVENTS.c.seq > after_seq, EVENTS.c.seq <= top, EVENTS.c.item_id.in_(list(item_ids)))
                .group_by(EVENTS.c.item_id)
            )
            return {str(i): int(n) for i, n in conn.execute(q)}, top

    # ---- cold-start items ------------------------------------------------------------------
    def add_cold_item(
        self, item_id: str, title: str, kind: str, genres: Sequence[str], year: int | None
    ) -> ColdItemRow:
        with self._tx("write") as conn:
            n = conn.execute(sa.select(sa.func.count()).select_from(COLD_ITEMS)).scalar_one()
            if n >= self.limits.max_cold_items:
                raise StateConflict(f"the store already holds {n} added items (max_cold_items)")
            exists = conn.execute(sa.select(COLD_ITEMS.c.seq).where(COLD_ITEMS.c.item_id == item_id)).first()
            if exists is not None:
                raise StateConflict(f"item id {item_id} already exists")
            row = conn.execute(
                COLD_ITEMS.insert()
                .values(
                    item_id=item_id,
                    title=title,
                    kind=kind,
                    genres=json.dumps(list(genres)),
                    year=year,
                    ts=time.time(),
                )
                .returning(*COLD_ITEMS.c)
            ).one()
        return _cold(row)

    def cold_items(self, after_seq: int = 0) -> list[ColdItemRow]:
        q = sa.select(COLD_ITEMS).where(COLD_ITEMS.c.seq > after_seq).order_by(COLD_ITEMS.c.seq)
        with self._reading("read") as conn:
            return [_cold(r) for r in conn.execute(q)]

    def cold_seq(self) -> int:
        """The newest cold item's sequence number: workers poll it to pick up items added elsewhere."""
        with self._reading("read") as conn:
            q = sa.select(sa.func.coalesce(sa.func.max(COLD_ITEMS.c.seq), 0))
            return int(conn.execute(q).scalar_one())

    # ---- metadata --------------------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        with self._reading("read") as conn:
            v = conn.execute(sa.select(META.c.value).where(META.c.key == key)).scalar_one_or_none()
        return json.loads(v) if v is not None else None

    def set_meta(self, key: str, value: Any) -> None:
        ins = _insert(self.kind)(META).values(key=key, value=json.dumps(value))
        ins = ins.on_conflict_do_update(index_elements=[META.c.key], set_={"value": ins.excluded.value})
        with self._tx("write") as conn:
            conn.execute(ins)

    def bind_catalog(self, catalog: CatalogPrint) -> None:
        """Record the catalog this store serves, or check that `catalog` is of its lineage.

        Raises `StateError` for another model's catalog: its sessions would be replayed as ids of
        the wrong items, and a retrain would mix the two logs."""
        ins = _insert(self.kind)(META).values(key=CATALOG_KEY, value=json.dumps(catalog.to_json()))
        with self._tx("catalog check") as conn:
            conn.execute(ins.on_conflict_do_nothing(index_elements=[META.c.key]))
            raw = conn.execute(sa.select(META.c.value).where(META.c.key == CATALOG_KEY)).scalar_one()
        self._same_catalog(self._parse_catalog(json.loads(raw)), catalog, "its own state store (--state)")

    def check_catalog(self, catalog: CatalogPrint) -> None:
        """`bind_catalog`'s refusal without its write, for a reader of the log (`playnext
        retrain`): a store no model has served yet records nothing and refuses nothing."""
        raw = self.get_meta(CATALOG_KEY)
        if raw is not None:
            self._same_catalog(self._parse_catalog(raw), catalog, "the store it was served with (--store)")

    def catalog(self) -> CatalogPrint | None:
        """The catalog recorded by `bind_catalog` (None before any model was served)."""
        raw = self.get_meta(CATALOG_KEY)
        return self._parse_catalog(raw) if raw is not None else None

    def _parse_catalog(self, raw: Any) -> CatalogPrint:
        try:
            return CatalogPrint.from_json(raw)
        except (TypeError, ValueError) as e:
            raise StateError(f"state store {self.where}: its catalog record is damaged ({e})") from None

    def _same_catalog(self, mine: CatalogPrint, catalog: CatalogPrint, give: str) -> None:
        if not mine.matches(catalog):
            reason = (
                f"the state store belongs to another catalog ({mine.describe()}) than this model's "
                f"({catalog.describe()}): give this model {give}"
            )
            raise StateError(f"state store {self.where}: {reason}", reason)

    # ---- health ------------------------------------------------------------------------------
    def check(self) -> int:
        """/health's probe: the file is the one opened, with a SQLite header and room to grow; a
        read of the schema (tables, columns, version) and the sessions; a write that is rolled
        back (committed, to see whether writes work again, after a write failed), with the log
        checked (`_check_intact`); a `PRAGMA quick_check` when due. Returns the number of
        sessions; raises `StateError` with the reason."""
        self._check_file(header=True)
        self._quick_check(wait=True)
        self._check_intact()
        if self.sqlite_path is not None:
            try:
                free = shutil.disk_usage(self.sqlite_path.parent).free
            except OSError as e:
                raise self._error("health check", e.strerror or str(e)) from None
            if free < MIN_FREE_BYTES:
                raise self._error("health check", f"disk full ({free // 1024} KiB free beside the file)")
        # SQLite's readers never wait for writers; PostgreSQL's share the writers' pool: the probe's
        with self._reading("health read", self._read if self.kind == "sqlite" else self._probe) as conn:
            self._check_schema(conn)
            n = int(conn.execute(sa.select(sa.func.count()).select_from(SESSIONS)).scalar_one())
        self._probe_write(commit=self._failing is not None)
        return n

    def _probe_write(self, commit: bool) -> None:
        """A write on the probe's own connection, waiting `PROBE_BUSY_MS` at most for the lock
        (writes queued on the busy timeout fill the writers' pool: /health must not wait behind
        them); rolled back, or with `commit` (after a write failed) committed, which clears the
        failure when writes work again."""
        ins = _insert(self.kind)(META).values(key=PROBE_KEY, value=json.dumps(time.time()))
        ins = ins.on_conflict_do_update(index_elements=[META.c.key], set_={"value": ins.excluded.value})
        try:
            self._check_file()  # before a connection: a new one to a deleted file's path creates one
            with self._guard("write probe"), self._probe.connect() as conn:
                tx = conn.begin()  # SQLite: BEGIN IMMEDIATE, the write lock waited for PROBE_BUSY_MS
                try:
                    if self.kind == "postgresql":
                        conn.execute(sa.text(f"SET LOCAL lock_timeout = {PROBE_BUSY_MS}"))
                    self._check_file()
                    conn.execute(ins)  # the write lock is held from here: the log cannot move
                    self._check_intact(wal=True)
                    if commit:
                        tx.commit()
                finally:
                    if tx.is_active:
                        tx.rollback()
            if commit:
                self._check_file(header=True)
                self._failing = None
        except StateError as e:
            waits = self._lock_waits()
            if waits:
                raise StateError(f"{e}; {waits}", f"{e.reason}; {waits}") from None
            raise

    def _lock_waits(self) -> str:
        """How many of this process's writes wait for the lock, and the oldest for how long: what
        an operator needs to tell a held lock from a slow disk."""
        with self._waits_lock:
            starts = list(self._waits.values())
        if not starts:
            return ""
        oldest = time.monotonic() - min(starts)
        return f"{len(starts)} write(s) waiting for the database lock, the oldest for {oldest:.1f} s"

    # ---- internals ---------------------------------------------------------------------------
    def _session(self, conn: Connection, session_id: str) -> SessionState | None:
        s = conn.execute(sa.select(SESSIONS).where(SESSIONS.c.session_id == session_id)).first()
        if s is None:
            return None
        q = (
            sa.select(EVENTS)
            .where(EVENTS.c.session_id == session_id)
            .order_by(EVENTS.c.seq.desc())
            .limit(self.limits.max_session_events)
        )
        events = [_event(r) for r in conn.execute(q)][::-1]
        return SessionState(s.session_id, s.user_id, s.created, s.updated, events)

    def _evict_sessions(self, conn: Connection, keep: str) -> None:
        n = conn.execute(sa.select(sa.func.count()).select_from(SESSIONS)).scalar_one()
        excess = int(n) - self.limits.max_sessions
        if excess <= 0:
            return
        oldest = (
            sa.select(SESSIONS.c.session_id)
            .where(SESSIONS.c.session_id != keep)
            .order_by(SESSIONS.c.updated, SESSIONS.c.session_id)
            .limit(excess)
            .scalar_subquery()
        )
        conn.execute(SESSIONS.delete().where(SESSIONS.c.session_id.in_(oldest)))

    def _trim_log(self, conn: Connection, top: int) -> None:
        if top > self.limits.max_log_events:
            conn.execute(EVENTS.delete().where(EVENTS.c.seq <= top - self.limits.max_log_events))

    def _prepare(self, conn: Connection) -> None:
        """Check the tables that exist are exactly this playnext's (version, then columns), create
        the missing ones, and stamp a new store with the schema version."""
        insp = sa.inspect(conn)
        present = [t for t in _meta.sorted_tables if insp.has_table(t.name)]
        version = None
        if META in present:
            self._check_columns(insp, META)
            version = _version(conn)
            self._check_version(version)
        for table in present:
            self._check_columns(insp, table)
        _meta.create_all(conn)
        if version is None:
            conn.execute(META.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))

    def _check_version(self, v: str | None) -> None:
        if v is None:
            return
        try:
            n = int(v)
        except (TypeError, ValueError):
            n = None
        if n is None or str(n) != v.strip() or n < 1:
            raise self._refused(
                f"schema_version {v!r} is not a playnext schema version: another program's tables "
                "or a damaged store; use another store"
            )
        if n > SCHEMA_VERSION:
            raise self._refused(
                f"the store's schema version {v} is newer than this playnext's ({SCHEMA_VERSION}); "
                "upgrade playnext or use another store"
            )

    def _check_columns(self, insp: Any, table: sa.Table) -> None:
        """The table's columns, their types (integer, number or text) and primary key are ours."""
        got = {c["name"]: _family(c["type"]) for c in insp.get_columns(table.name)}
        want = {c.name: _family(c.type) for c in table.columns}
        pk = set(insp.get_pk_constraint(table.name).get("constrained_columns") or [])
        if got != want or pk != {c.name for c in table.primary_key}:
            shown = ", ".join(f"{k} {v}" for k, v in got.items())
            raise self._refused(
                f"table {table.name} has columns ({shown}), not playnext's "
                f"({', '.join(f'{k} {v}' for k, v in want.items())}): another program's tables "
                "or a damaged store; use another store"
            )

    def _check_schema(self, conn: Connection) -> None:
        """Every table is there with exactly playnext's columns, at this schema version."""
        insp = sa.inspect(conn)
        for table in _meta.sorted_tables:
            if not insp.has_table(table.name):
                raise self._refused(f"table {table.name} is missing")
            self._check_columns(insp, table)
        v = _version(conn)
        if v != str(SCHEMA_VERSION):
            raise self._refused(f"schema version {v!r}, expected {SCHEMA_VERSION}")

    def _check_schema_unchanged(self, conn: Connection) -> None:
        """In every write transaction: a write commits only into playnext's exact schema, as
        /health's check requires (another program may rename, replace or alter a table, or the
        version row, under a running server). A cheap mark is read each time; the full check
        runs again only when the mark moved (another worker creating missing tables moves it
        too, and passes)."""
        mark = _schema_mark(conn, self.kind)
        if mark != self._schema_mark:
            self._check_schema(conn)
            self._schema_mark = mark

    def _refused(self, reason: str) -> StateError:
        return StateError(f"{self.where}: {reason}", f"state store refused: {reason}")

    def _check_file(self, header: bool = False) -> None:
        """The SQLite file at the path is the one this store opened: a file deleted (or replaced)
        under it leaves the open connections writing to an unlinked inode, lost at the restart.
        With `header`, also that it still starts as a SQLite file: in WAL mode writes never read
        the header, and one overwritten in place takes every committed write with it at the
        restart ("file is not a database")."""
        if self._file_id is None or self.sqlite_path is None:
            return
        try:  # never open and close the file: that would drop SQLite's locks on it (`Pinned`)
            st = os.stat(self.sqlite_path)
            same = (st.st_dev, st.st_ino) == self._file_id
            path = str(self.sqlite_path)
            magic = os.pread(self._pinned.fd(path), len(SQLITE_MAGIC), 0) if header and same else SQLITE_MAGIC
        except FileNotFoundError:
            raise self._error("check", f"the state file was deleted while the server ran{GONE}") from None
        except OSError as e:
            raise self._error("check", e.strerror or str(e)) from None
        if not same:
            raise self._error("check", f"the state file was replaced while the server ran{GONE}")
        if magic != SQLITE_MAGIC:
            raise self._error("check", "the state file's header is not SQLite's (overwritten in place?)")

    def _check_intact(self, wal: bool = False) -> None:
        """No damage found before, and with `wal` (only while holding the write lock), every
        frame of the write-ahead log committed so far is still on disk as written: SQLite reads
        live frames through its shared index and never re-checks them, but the first start after
        a crash drops the first damaged frame and every commit after it, silently."""
        if wal and self._damaged is None and self._wal is not None:
            damage = self._wal.check()
            if damage is not None:
                self._damaged = (
                    f"{damage}; stop the server with SIGTERM (its last connection writes the log "
                    "into the file) or copy the store with sqlite3 .backup while it runs"
                )
        if self._damaged is not None:
            raise self._error("check", f"the store is damaged: {self._damaged}")

    def _quick_check(self, wait: bool) -> None:
        """Start SQLite's `PRAGMA quick_check` (every page of the file, its b-trees and records)
        in a thread when due (/health asks); with `wait`, give one started now `QUICK_CHECK_WAIT_S`.
        Its cost grows with the file (0.3 s for a 60 MB store of 1M events), so it runs at most
        every `QUICK_CHECK_EVERY_S` and `QUICK_CHECK_SHARE` times its last duration."""
        if self.kind != "sqlite" or self._damaged is not None or time.monotonic() < self._qc_next:
            return
        running = self._qc_thread
        if running is not None and running.is_alive():
            return
        self._qc_next = float("inf")  # until this one finishes
        thread = threading.Thread(target=self._run_quick_check, name="playnext-quick-check", daemon=True)
        self._qc_thread = thread
        thread.start()
        if wait:
            thread.join(QUICK_CHECK_WAIT_S)

    def _run_quick_check(self) -> None:
        t0 = time.monotonic()
        try:
            with self._guard("quick_check"), self._read.connect() as conn:  # a snapshot: writers go on
                rows = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA quick_check(3)")]
            if rows != ["ok"]:
                self._damaged = f"the state file is damaged (quick_check: {'; '.join(rows)[:300]})"
        except StateError:
            pass  # a damaged file was latched by _guard; a locked or vanished one is /health's to say
        finally:
            spent = time.monotonic() - t0
            self._qc_next = time.monotonic() + max(QUICK_CHECK_EVERY_S, QUICK_CHECK_SHARE * spent)

    def _error(self, what: str, reason: str) -> StateError:
        return StateError(
            f"state store {self.where}: {what} failed: {reason}", f"state store {what} failed: {reason}"
        )

    @contextmanager
    def _reading(self, what: str, engine: Engine | None = None) -> Iterator[Connection]:
        self._check_file()  # first: a new connection to a deleted file's path would create an empty one
        with self._guard(what), (engine or self._read).connect() as conn:
            self._check_file()
            yield conn

    @contextmanager
    def _tx(self, what: str) -> Iterator[Connection]:
        """A write transaction: the file is checked before, once the write lock is held, and after
        the commit, so a write is acknowledged only if it went into the file at the path, and
        that file is still a SQLite file."""
        try:
            self._check_file(header=True)
            self._check_intact()
            with self._guard(what):
                with self._begin() as conn:
                    self._check_file()
                    self._check_intact(wal=True)  # BEGIN IMMEDIATE holds the write lock
                    self._check_schema_unchanged(conn)
                    yield conn
                self._check_file(header=True)
        except StateError as e:
            self._failing = e.reason
            raise
        self._failing = None

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """`self._write.begin()`, its wait for a pooled connection and for the write lock (BEGIN
        IMMEDIATE) recorded in `_waits` for /health's reason; committed at the end, rolled back
        on an exception."""
        key = next(self._wait_ids)
        with self._waits_lock:
            self._waits[key] = time.monotonic()
        try:
            conn = self._write.connect()
            try:
                tx = conn.begin()
            except BaseException:
                conn.close()
                raise
        finally:
            with self._waits_lock:
                del self._waits[key]
        with conn, tx:
            yield conn

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Database failures become one `StateError` naming the store (the server's 503)."""
        try:
            yield
        except sa.exc.DBAPIError as e:
            reason = str(e.orig).strip().splitlines()[0] if e.orig is not None else str(e)
            if getattr(e.orig, "sqlite_errorcode", 0) & 0xFF in SQLITE_DAMAGED and self._damaged is None:
                self._damaged = f"the state file is damaged ({reason})"  # every write refused from now
            raise self._error(what, reason) from None
        except sa.exc.TimeoutError:  # every pooled connection busy: writes queued on the lock, most likely
            raise self._error(what, "no database connection free (all in use)") from None


def _version(conn: Connection) -> str | None:
    q = sa.select(META.c.value).where(META.c.key == "schema_version")
    v: str | None = conn.execute(q).scalar_one_or_none()
    return v


def _schema_mark(conn: Connection, kind: str) -> tuple[object, ...]:
    """What changes whenever playnext's schema may have: SQLite's schema cookie (bumped by every
    CREATE, ALTER, DROP), on PostgreSQL the playnext_* tables' oids and columns; and the
    version row, which is data."""
    if kind == "sqlite":
        shape: object = conn.exec_driver_sql("PRAGMA schema_version").scalar_one()
    else:
        shape = conn.execute(
            sa.text(
                "SELECT string_agg(c.oid::text || '.' || a.attname || ':' || a.atttypid::text, ','"
                " ORDER BY c.oid, a.attnum) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                " WHERE c.relname LIKE 'playnext\\_%' AND c.relkind = 'r' AND a.attnum > 0"
                " AND NOT a.attisdropped AND pg_table_is_visible(c.oid)"
            )
        ).scalar_one()
    return (shape, _version(conn))


def _family(t: Any) -> str:
    """A column type as a schema check compares it: what each dialect reflects differs in name."""
    if isinstance(t, sa.Integer):
        return "integer"
    if isinstance(t, sa.Float | sa.Numeric):
        return "number"
    if isinstance(t, sa.String):
        return "text"
    return type(t).__name__.lower()


def _engines(url: str, kind: str, busy_ms: int) -> tuple[Engine, Engine]:
    """Readers and writers apart on SQLite: a write transaction starts with BEGIN IMMEDIATE (it takes
    the write lock at once, so two writers queue on busy_timeout instead of deadlocking), reads
    start a plain snapshot and never wait for writers (WAL)."""
    if kind == "postgresql":
        eng = sa.create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=8)
        return eng, eng
    return _sqlite_engine(url, "BEGIN", busy_ms), _sqlite_engine(url, "BEGIN IMMEDIATE", busy_ms)


def _sqlite_engine(url: str, begin: str, busy_ms: int, **pool: Any) -> Engine:
    """A SQLite engine whose transactions start with `begin`, waiting `busy_ms` for a lock."""
    eng = sa.create_engine(url, connect_args={"timeout": busy_ms / 1000}, **pool)

    @sa_event.listens_for(eng, "connect")
    def _connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
        cur.close()

    @sa_event.listens_for(eng, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)

    return eng


def _probe_engine(url: str, kind: str) -> Engine:
    """/health's connections, apart from the writers' pool (which writes queued on the busy
    timeout can fill): the lock waited for `PROBE_BUSY_MS`, and as long for a connection when
    several /health calls overlap."""
    wait_s = PROBE_BUSY_MS / 1000
    pool: dict[str, Any] = {"pool_size": 1, "max_overflow": 3, "pool_timeout": wait_s}
    if kind == "postgresql":
        return sa.create_engine(url, pool_pre_ping=True, **pool)
    return _sqlite_engine(url, "BEGIN IMMEDIATE", PROBE_BUSY_MS, **pool)


def _insert(kind: str) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if kind == "postgresql" else sqlite.insert


def _event(r: Any) -> EventRow:
    return EventRow(int(r.seq), r.session_id, r.user_id, r.item_id, r.event, r.value, float(r.ts))


def _cold(r: Any) -> ColdItemRow:
    return ColdItemRow(int(r.seq), r.item_id, r.title, r.kind, json.loads(r.genres), r.year, float(r.ts))
