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
"""

from __future__ import annotations

import json
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

SCHEMA_VERSION = 1
DB_FILE = "state.db"

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
    """The store cannot be used (unreachable, locked, corrupt, newer schema): the server answers 503."""


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
        self.sqlite_path = sqlite_path
        self.kind = "sqlite" if url.startswith("sqlite") else "postgresql"
        self._read, self._write = _engines(url, self.kind, busy_ms)
        with self._guard("open"), self._write.begin() as conn:
            if self.kind == "postgresql":  # several workers may create the schema at once
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7061726)"))
            _meta.create_all(conn)
            self._check_version(conn)

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
        self._read.dispose()
        self._write.dispose()

    @property
    def where(self) -> str:
        """The store's location for messages and /health, never with a password."""
        if self.sqlite_path is not None:
            return str(self.sqlite_path)
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    # ---- sessions and events ---------------------------------------------------------------
    def append(self, session_id: str, events: Sequence[NewEvent], user_id: str | None = None) -> SessionState:
        """Log `events` and add them to the session (created if new); returns the session as committed."""
        now = time.time()
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
        with self._guard("write"), self._write.begin() as conn:
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
                self._evict_sessions(conn)
            state = self._session(conn, session_id)
        assert state is not None
        return state

    def session(self, session_id: str) -> SessionState | None:
        with self._guard("read"), self._read.connect() as conn:
            return self._session(conn, session_id)

    def delete_session(self, session_id: str) -> bool:
        """Forget a session and its events (the client asked for it: they leave the log too)."""
        with self._guard("write"), self._write.begin() as conn:
            n = conn.execute(SESSIONS.delete().where(SESSIONS.c.session_id == session_id)).rowcount
            conn.execute(EVENTS.delete().where(EVENTS.c.session_id == session_id))
        return bool(n)

    def n_sessions(self) -> int:
        with self._guard("read"), self._read.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(SESSIONS)).scalar_one())

    def events(self, after_seq: int = 0, limit: int | None = None) -> list[EventRow]:
        """The log after `after_seq`, in arrival order (the feedback loop's input)."""
        q = sa.select(EVENTS).where(EVENTS.c.seq > after_seq).order_by(EVENTS.c.seq)
        if limit is not None:
            q = q.limit(limit)
        with self._guard("read"), self._read.connect() as conn:
            return [_event(r) for r in conn.execute(q)]

    def last_seq(self) -> int:
        """The newest event's sequence number (0 for an empty log): a retrain's watermark."""
        with self._guard("read"), self._read.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(EVENTS.c.seq), 0))).scalar_one())

    def item_counts(self, item_ids: Sequence[str], after_seq: int = 0) -> tuple[dict[str, int], int]:
        """Events of each of `item_ids` logged after `after_seq`, and the watermark they run to.

        Callers keep a running count by passing the returned watermark next time: each call reads
        only the newest events (a primary-key range), however long the log."""
        with self._guard("read"), self._read.connect() as conn:
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
        with self._guard("write"), self._write.begin() as conn:
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
        with self._guard("read"), self._read.connect() as conn:
            return [_cold(r) for r in conn.execute(q)]

    def cold_seq(self) -> int:
        """The newest cold item's sequence number: workers poll it to pick up items added elsewhere."""
        with self._guard("read"), self._read.connect() as conn:
            q = sa.select(sa.func.coalesce(sa.func.max(COLD_ITEMS.c.seq), 0))
            return int(conn.execute(q).scalar_one())

    # ---- metadata --------------------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        with self._guard("read"), self._read.connect() as conn:
            v = conn.execute(sa.select(META.c.value).where(META.c.key == key)).scalar_one_or_none()
        return json.loads(v) if v is not None else None

    def set_meta(self, key: str, value: Any) -> None:
        ins = _insert(self.kind)(META).values(key=key, value=json.dumps(value))
        ins = ins.on_conflict_do_update(index_elements=[META.c.key], set_={"value": ins.excluded.value})
        with self._guard("write"), self._write.begin() as conn:
            conn.execute(ins)

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

    def _evict_sessions(self, conn: Connection) -> None:
        n = conn.execute(sa.select(sa.func.count()).select_from(SESSIONS)).scalar_one()
        excess = int(n) - self.limits.max_sessions
        if excess <= 0:
            return
        oldest = (
            sa.select(SESSIONS.c.session_id)
            .order_by(SESSIONS.c.updated, SESSIONS.c.session_id)
            .limit(excess)
            .scalar_subquery()
        )
        conn.execute(SESSIONS.delete().where(SESSIONS.c.session_id.in_(oldest)))

    def _trim_log(self, conn: Connection, top: int) -> None:
        if top > self.limits.max_log_events:
            conn.execute(EVENTS.delete().where(EVENTS.c.seq <= top - self.limits.max_log_events))

    def _check_version(self, conn: Connection) -> None:
        v = conn.execute(sa.select(META.c.value).where(META.c.key == "schema_version")).scalar_one_or_none()
        if v is None:
            conn.execute(META.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
        elif int(v) > SCHEMA_VERSION:
            raise StateError(
                f"{self.where}: the store's schema version {v} is newer than this playnext's "
                f"({SCHEMA_VERSION}); upgrade playnext or use another store"
            )

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Database failures become one `StateError` naming the store (the server's 503)."""
        try:
            yield
        except sa.exc.DBAPIError as e:
            reason = str(e.orig).strip().splitlines()[0] if e.orig is not None else str(e)
            raise StateError(f"state store {self.where}: {what} failed: {reason}") from None


def _engines(url: str, kind: str, busy_ms: int) -> tuple[Engine, Engine]:
    """Readers and writers apart on SQLite: a write transaction starts with BEGIN IMMEDIATE (it takes
    the write lock at once, so two writers queue on busy_timeout instead of deadlocking), reads
    start a plain snapshot and never wait for writers (WAL)."""
    if kind == "postgresql":
        eng = sa.create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=8)
        return eng, eng
    engines = []
    for begin in ("BEGIN", "BEGIN IMMEDIATE"):
        eng = sa.create_engine(url, connect_args={"timeout": busy_ms / 1000})

        @sa_event.listens_for(eng, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        def _begin(conn: Connection, stmt: str = begin) -> None:
            conn.exec_driver_sql(stmt)

        sa_event.listen(eng, "begin", _begin)
        engines.append(eng)
    return engines[0], engines[1]


def _insert(kind: str) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if kind == "postgresql" else sqlite.insert


def _event(r: Any) -> EventRow:
    return EventRow(int(r.seq), r.session_id, r.user_id, r.item_id, r.event, r.value, float(r.ts))


def _cold(r: Any) -> ColdItemRow:
    return ColdItemRow(int(r.seq), r.item_id, r.title, r.kind, json.loads(r.genres), r.year, float(r.ts))
