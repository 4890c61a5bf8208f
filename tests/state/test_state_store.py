"""The durable state store, on SQLite and on PostgreSQL: one behaviour, two back ends."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from playnext.state import CatalogPrint, Limits, NewEvent, StateConflict, StateError, StateStore
from playnext.state.store import DB_FILE, SCHEMA_VERSION, SESSIONS_LOCK


def test_append_read_and_session_view_bound(store_where: str) -> None:
    s = StateStore.open(store_where, Limits(max_session_events=3))
    s.append("a", [NewEvent("i1", "play", 0.5, ts=10.0)], user_id="u1")
    st = s.append("a", [NewEvent("i2"), NewEvent("i3", "skip"), NewEvent("i4", "like", 1.0)])
    assert st.item_ids() == ["i2", "i3", "i4"]  # the last 3, oldest first
    assert st.user_id == "u1"  # kept when a later write gives none
    assert [e.event for e in st.events] == [None, "skip", "like"]
    again = StateStore.open(store_where)  # a second process would see exactly this
    got = again.session("a")
    assert got is not None and got.item_ids() == ["i1", "i2", "i3", "i4"]
    log = again.events()
    assert [e.item_id for e in log] == ["i1", "i2", "i3", "i4"]  # the log keeps all four
    assert log[0].ts == 10.0 and log[0].value == 0.5 and log[0].user_id == "u1"
    assert [e.seq for e in again.events(after_seq=log[1].seq)] == [log[2].seq, log[3].seq]
    assert again.last_seq() == log[-1].seq
    assert again.session("nope") is None


def test_lru_eviction_is_deterministic_and_keeps_the_log(store_where: str) -> None:
    s = StateStore.open(store_where, Limits(max_sessions=2))
    s.append("s1", [NewEvent("x")])
    s.append("s2", [NewEvent("y")])
    s.append("s1", [NewEvent("z")])  # s1 is now the most recent
    s.append("s3", [NewEvent("w")])  # evicts s2
    assert s.session("s2") is None and s.session("s1") is not None and s.session("s3") is not None
    assert s.n_sessions() == 2
    assert [e.item_id for e in s.events()] == ["x", "y", "z", "w"]  # evicted events stay for retraining


def test_delete_forgets_the_session_and_its_events(store_where: str) -> None:
    s = StateStore.open(store_where)
    s.append("gone", [NewEvent("a"), NewEvent("b")])
    s.append("kept", [NewEvent("c")])
    assert s.delete_session("gone") and not s.delete_session("gone")
    assert [e.item_id for e in s.events()] == ["c"]


def test_event_log_bound_drops_oldest(store_where: str) -> None:
    s = StateStore.open(store_where, Limits(max_log_events=5))
    for i in range(8):
        s.append("s", [NewEvent(f"i{i}")])
    assert [e.item_id for e in s.events()] == [f"i{i}" for i in range(3, 8)]


def test_item_counts_run_incrementally_from_a_watermark(store_where: str) -> None:
    s = StateStore.open(store_where)
    assert s.item_counts(["a"]) == ({}, 0)
    s.append("s1", [NewEvent("a"), NewEvent("b"), NewEvent("a", "skip")])
    got, mark = s.item_counts(["a", "c"])
    assert got == {"a": 2} and mark == s.last_seq()
    s.append("s2", [NewEvent("c"), NewEvent("a"), NewEvent("b")])
    newer, mark2 = s.item_counts(["a", "c"], after_seq=mark)  # only what came after the watermark
    assert newer == {"a": 1, "c": 1} and mark2 == s.last_seq()
    assert s.item_counts(["a"], after_seq=mark2) == ({}, mark2)
    assert s.item_counts([], after_seq=0) == ({}, mark2)


def test_cold_items_and_meta(store_where: str) -> None:
    s = StateStore.open(store_where, Limits(max_cold_items=2))
    assert s.cold_seq() == 0
    a = s.add_cold_item("new-1", "Film A", "movie", ["Drama", "War"], 2024)
    with pytest.raises(StateConflict, match="already exists"):
        s.add_cold_item("new-1", "again", "movie", [], None)
    b = s.add_cold_item("new-2", "Game B", "game", [], None)
    with pytest.raises(StateConflict, match="max_cold_items"):
        s.add_cold_item("new-3", "one too many", "game", [], None)
    rows = StateStore.open(store_where).cold_items()
    assert [(r.item_id, r.genres, r.year) for r in rows] == [
        ("new-1", ["Drama", "War"], 2024),
        ("new-2", [], None),
    ]
    assert s.cold_seq() == b.seq and [r.item_id for r in s.cold_items(after_seq=a.seq)] == ["new-2"]
    s.set_meta("model", {"path": "/m/v2", "n": 2})
    s.set_meta("model", {"path": "/m/v3", "n": 3})
    assert s.get_meta("model") == {"path": "/m/v3", "n": 3} and s.get_meta("absent") is None


def test_concurrent_writers_lose_nothing(store_where: str) -> None:
    """Threads standing in for workers append to shared and own sessions at once."""
    s = StateStore.open(store_where)
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            other = StateStore.open(store_where)
            for i in range(25):
                other.append("shared", [NewEvent(f"w{w}-{i}")])
                other.append(f"own-{w}", [NewEvent(f"w{w}-{i}")], user_id=f"u{w}")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    log = s.events()
    assert len(log) == 200 and len({e.seq for e in log}) == 200
    shared = StateStore.open(store_where, Limits(max_session_events=1000)).session("shared")
    assert shared is not None and len(shared.events) == 100


def test_sqlite_is_wal_and_durable(tmp_path: Path) -> None:
    s = StateStore.open(tmp_path)
    s.append("a", [NewEvent("x")])
    con = sqlite3.connect(tmp_path / DB_FILE)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_corrupt_sqlite_is_one_clear_error_and_untouched(tmp_path: Path) -> None:
    db = tmp_path / DB_FILE
    db.write_bytes(b"this is not a database" * 100)
    before = db.read_bytes()
    with pytest.raises(StateError, match=rf"{DB_FILE}.*not a database"):
        StateStore.open(tmp_path)
    assert db.read_bytes() == before


def test_newer_schema_is_refused_and_kept(store_where: str) -> None:
    s = StateStore.open(store_where)
    s.append("a", [NewEvent("x")])
    s.set_meta("probe", 1)
    import sqlalchemy as sa

    from playnext.state.store import META

    with s._write.begin() as conn:
        conn.execute(
            META.update().where(META.c.key == "schema_version").values(value=str(SCHEMA_VERSION + 1))
        )
    with pytest.raises(StateError, match="newer than this playnext"):
        StateStore.open(store_where)
    with s._read.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(sa.table("playnext_events"))).scalar() == 1


def test_locked_sqlite_is_a_state_error(tmp_path: Path) -> None:
    s = StateStore.open(tmp_path)
    s.append("a", [NewEvent("x")])
    holder = sqlite3.connect(tmp_path / DB_FILE, timeout=0.1, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        quick = StateStore(f"sqlite:///{tmp_path / DB_FILE}", sqlite_path=tmp_path / DB_FILE, busy_ms=200)
    except StateError as e:  # opening already needs the lock
        assert "locked" in str(e)
    else:
        with pytest.raises(StateError, match="locked"):
            quick.append("a", [NewEvent("y")])
    finally:
        holder.execute("ROLLBACK")
    assert [e.item_id for e in StateStore.open(tmp_path).events()] == ["x"]


def test_unreachable_postgres_is_one_clear_error() -> None:
    with pytest.raises(StateError, match=r"127\.0\.0\.1.*(refused|failed)"):
        StateStore.open("postgresql://nobody:secret@127.0.0.1:1/nothing")


def test_bad_store_url() -> None:
    with pytest.raises(StateError, match="sqlite:///FILE or postgresql"):
        StateStore.open("mysql://x/y")


def _hold_session_lock(store_where: str) -> tuple[Any, Any]:
    """Another worker's write transaction holding the session writers' lock; returns (commit, conn)."""
    if not store_where.startswith("postgresql"):
        con = sqlite3.connect(Path(store_where) / DB_FILE, isolation_level=None, timeout=10)
        con.execute("BEGIN IMMEDIATE")
        return con.execute, con
    import sqlalchemy as sa

    eng = sa.create_engine(store_where.replace("postgresql://", "postgresql+psycopg://", 1))
    conn = eng.connect()
    conn.begin()
    conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({SESSIONS_LOCK})"))
    return (lambda q, p=(): conn.exec_driver_sql(q.replace("?", "%s"), tuple(p))), conn


def test_a_writer_that_waited_for_the_lock_is_not_evicted(store_where: str) -> None:
    """Eviction follows commit order: a new session whose write waited for the lock while other
    workers wrote newer sessions used to be the oldest when it committed, evicted itself, and
    answered a 500 for a write that was saved (issue #30, fault 4)."""
    s = StateStore.open(store_where, Limits(max_sessions=3))
    for i in range(3):
        s.append(f"old{i}", [NewEvent("x")])
    execute, holder = _hold_session_lock(store_where)
    got: dict[str, Any] = {}

    def late() -> None:
        try:
            got["state"] = s.append("late", [NewEvent("y")])
        except BaseException as e:  # reported below
            got["error"] = e

    t = threading.Thread(target=late)
    t.start()
    time.sleep(0.3)  # "late" waits for the lock now
    now = time.time()
    for i in range(3):  # sessions another worker writes meanwhile, committed first
        execute("INSERT INTO playnext_sessions VALUES (?, NULL, ?, ?, 1)", (f"new{i}", now, now))
    execute("COMMIT")
    holder.close()
    t.join(15)
    assert "error" not in got, got.get("error")
    assert got["state"].item_ids() == ["y"]
    assert s.session("late") is not None and s.n_sessions() == 3
    assert {x for x in ("new0", "new1", "new2") if s.session(x) is not None} == {"new1", "new2"}
    assert [e.item_id for e in s.events()] == ["x", "x", "x", "y"]


def test_sqlite_write_connection_is_full_sync(tmp_path: Path) -> None:
    """`synchronous=FULL` read on the store's own write connection (a commit is on disk, not in
    the OS cache): another connection would report its own default."""
    s = StateStore.open(tmp_path)
    s.append("a", [NewEvent("x")])
    with s._write.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_deleted_or_replaced_file_acknowledges_no_write(tmp_path: Path, how: str) -> None:
    """`rm state/state.db*` under a running server: the open connections would go on writing to
    the unlinked file, and every write answered 200 was gone after a restart (fault 3)."""
    s = StateStore.open(tmp_path)
    s.append("a", [NewEvent("x")])
    db = tmp_path / DB_FILE
    if how == "deleted":
        for f in tmp_path.glob(DB_FILE + "*"):
            f.unlink()
    else:  # an older copy put back by hand
        copy = tmp_path / "copy.db"
        sqlite3.connect(db).execute("VACUUM INTO ?", (str(copy),))
        copy.replace(db)
    with pytest.raises(StateError, match=f"file was {how}") as e:
        s.append("a", [NewEvent("lost")])
    assert str(tmp_path) not in e.value.reason and "restart" in e.value.reason
    with pytest.raises(StateError, match=f"file was {how}"):
        s.session("a")
    with pytest.raises(StateError, match=f"file was {how}"):
        s.check()
    after = StateStore.open(tmp_path)  # what a restart sees: nothing that was acknowledged is lost
    assert "lost" not in [e.item_id for e in after.events()]


def test_check_probes_the_store(tmp_path: Path) -> None:
    s = StateStore.open(tmp_path)
    s.append("a", [NewEvent("x")])
    assert s.check() == 1
    assert s.get_meta("health.probe") is None  # the write probe was rolled back
    holder = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    t0 = time.monotonic()
    with pytest.raises(StateError, match="locked"):
        s.check()
    assert time.monotonic() - t0 < 5  # the probe waits about a second, not the 10 s busy timeout
    holder.execute("ROLLBACK")
    holder.close()
    assert s.check() == 1
    with open(tmp_path / DB_FILE, "r+b") as f:  # the header overwritten in place (same inode)
        f.write(b"\0" * 16)
    with pytest.raises(StateError, match="header") as e:
        s.check()
    assert str(tmp_path) not in e.value.reason
    # WAL-mode writes never read the header: they would commit, and be lost with the file
    with pytest.raises(StateError, match="header"):
        s.append("a", [NewEvent("lost")])


def test_check_after_a_failed_write_commits_a_probe(tmp_path: Path) -> None:
    """A rolled-back write never reaches the disk, so after a real write failed (a full disk),
    /health's probe commits a write to see whether writes work again."""
    s = StateStore.open(tmp_path)
    s._failing = "state store write failed: database or disk is full"
    assert s.check() == 0
    assert s.get_meta("health.probe") is not None and s._failing is None


def _foreign_store(tmp_path: Path, sql: str) -> list[str]:
    con = sqlite3.connect(tmp_path / DB_FILE)
    con.executescript(sql)
    con.close()
    return _dump(tmp_path)


def _dump(tmp_path: Path) -> list[str]:
    con = sqlite3.connect(tmp_path / DB_FILE)
    try:
        return list(con.iterdump())
    finally:
        con.close()


@pytest.mark.parametrize("version", ["abc", "", "1.5", "0"])
def test_a_non_numeric_schema_version_is_one_clear_error(tmp_path: Path, version: str) -> None:
    before = _foreign_store(
        tmp_path,
        "CREATE TABLE playnext_meta (key VARCHAR(200) PRIMARY KEY, value TEXT NOT NULL);"
        f"INSERT INTO playnext_meta VALUES ('schema_version', '{version}');",
    )
    with pytest.raises(StateError, match="not a playnext schema version"):
        StateStore.open(tmp_path)
    assert _dump(tmp_path) == before


def test_tables_with_playnext_names_but_other_columns_are_refused_and_not_stamped(tmp_path: Path) -> None:
    before = _foreign_store(
        tmp_path, "CREATE TABLE playnext_sessions (session_id TEXT PRIMARY KEY, owner TEXT, data BLOB);"
    )
    with pytest.raises(StateError, match=r"playnext_sessions has columns \(session_id text, owner text"):
        StateStore.open(tmp_path)
    assert _dump(tmp_path) == before  # nothing created, nothing stamped


def test_the_exact_schema_is_checked_on_both_back_ends(store_where: str) -> None:
    s = StateStore.open(store_where)
    s.append("a", [NewEvent("x")])
    StateStore.open(store_where).close()  # its own schema passes
    import sqlalchemy as sa

    with s._write.begin() as conn:
        conn.execute(sa.text("ALTER TABLE playnext_events ADD COLUMN extra INTEGER"))
    with pytest.raises(StateError, match="playnext_events has columns"):
        StateStore.open(store_where)
    with pytest.raises(StateError, match="playnext_events has columns") as e:
        s.check()  # /health of a server already running on it
    assert "/" not in e.value.reason


FOREIGN_CHANGES = {
    "version": ["UPDATE playnext_meta SET value = 'abc' WHERE key = 'schema_version'"],
    "replaced table": [
        "ALTER TABLE playnext_cold_items RENAME TO their_items",
        "CREATE TABLE playnext_cold_items (a TEXT)",
    ],
    "added column": ["ALTER TABLE playnext_events ADD COLUMN extra INTEGER"],
}


@pytest.mark.parametrize("change", list(FOREIGN_CHANGES))
def test_writes_are_refused_once_the_schema_turns_foreign_under_an_open_store(
    store_where: str, change: str
) -> None:
    """/health said 503 for a foreign schema while event writes kept being acknowledged (issue
    #30): every write now checks the schema it commits into, and nothing is lost."""
    import sqlalchemy as sa

    s = StateStore.open(store_where)
    s.append("a", [NewEvent("x")])
    with s._write.begin() as conn:
        for sql in FOREIGN_CHANGES[change]:
            conn.execute(sa.text(sql))
    with pytest.raises(StateError) as e:
        s.check()
    assert e.value.reason.startswith("state store refused"), e.value.reason
    for write in (
        lambda: s.append("b", [NewEvent("y")]),
        lambda: s.append("a", [NewEvent("z")]),
        lambda: s.set_meta("k", 1),
        lambda: s.delete_session("a"),
    ):
        with pytest.raises(StateError) as w:
            write()
        assert w.value.reason == e.value.reason  # the same reason as /health's
    with s._read.connect() as conn:  # nothing was written, nothing erased
        rows = conn.execute(sa.text("SELECT session_id, item_id FROM playnext_events")).all()
    assert [tuple(r) for r in rows] == [("a", "x")]


def test_a_table_another_worker_creates_does_not_refuse_writes(tmp_path: Path) -> None:
    """The schema mark moves when another process creates a missing table; the full check then
    passes and writes go on."""
    s = StateStore.open(tmp_path)
    s.append("a", [NewEvent("x")])
    con = sqlite3.connect(tmp_path / DB_FILE)
    con.execute("DROP TABLE playnext_cold_items")
    con.close()
    StateStore.open(tmp_path).close()  # a worker starting: creates it again
    assert s.append("a", [NewEvent("y")]).item_ids() == ["x", "y"]


def test_a_store_belongs_to_one_catalog(store_where: str) -> None:
    s = StateStore.open(store_where)
    ids = [f"item-{i}" for i in range(400)]
    s.bind_catalog(CatalogPrint.of(ids, 400, "ml-1m"))
    s.bind_catalog(CatalogPrint.of(ids, 400, "ml-1m"))  # again: the same model
    grown = [*ids, "new-1", "new-2"]
    s.bind_catalog(CatalogPrint.of(grown, 402, "ml-1m"))  # a retrained model appends its new items
    s.bind_catalog(CatalogPrint.of(ids[:100], 100, "ml-1m"))  # an older parent of the lineage
    other = CatalogPrint.of([str(i) for i in range(50)], 50, "lastfm")
    with pytest.raises(StateError, match="belongs to another catalog") as e:
        StateStore.open(store_where).bind_catalog(other)
    assert "'ml-1m', 400 items" in e.value.reason and "'lastfm', 50 items" in e.value.reason
    assert "--state" in e.value.reason
    got = s.catalog()
    assert got is not None and got.n_items == 400 and got.head[:2] == ("item-0", "item-1")
    s.check_catalog(CatalogPrint.of(grown, 402, "ml-1m"))  # what retrain asks: read only
    with pytest.raises(StateError, match="belongs to another catalog") as e:
        s.check_catalog(other)
    assert "(--store)" in e.value.reason


def test_checking_a_catalog_records_nothing(tmp_path: Path) -> None:
    s = StateStore.open(tmp_path)
    s.check_catalog(CatalogPrint.of(["a"], 1))  # a store no model served refuses nothing
    assert s.catalog() is None


def test_check_on_both_back_ends(store_where: str) -> None:
    s = StateStore.open(store_where)
    s.append("a", [NewEvent("x")])
    s.append("b", [NewEvent("y")])
    assert s.check() == 2
    assert s.get_meta("health.probe") is None  # rolled back
    s._failing = "state store write failed: simulated"
    assert s.check() == 2 and s._failing is None and s.get_meta("health.probe") is not None
