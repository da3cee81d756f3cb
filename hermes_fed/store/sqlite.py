"""The log in SQLite: one file per tenant (by default), WAL, ``synchronous=FULL``.

Appends are serialised by SQLite's own write lock, taken up front with ``BEGIN IMMEDIATE``
(a deferred transaction that reads first and writes later can fail with SQLITE_BUSY
instead of waiting).
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event

from hermes_fed import errors

from .backend import COLUMNS, LogState, ReadRow
from .schema_ddl import sqlite_triggers
from .sql_backend import ErrorTable, SqlBackend, SqlTransaction, error_table

# sqlite3's PEP 249 classes, each raised as ours of the same name (a trigger's RAISE(ABORT)
# and a failed constraint are IntegrityError, "database is locked" OperationalError, ...).
ERRORS: ErrorTable = error_table(sqlite3)

_INSERT = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
SYNCHRONOUS = ("FULL", "NORMAL", "EXTRA")


_NO_WAIT = threading.local()
BUSY_TIMEOUT_MS = 60_000


@contextlib.contextmanager
def without_waiting() -> Iterator[None]:
    """Appends made by this thread inside the block do not wait for the write lock: one
    that finds it held raises :class:`~hermes_fed.errors.LogBusyError` at once, nothing
    written (the gateway's event loop appends a lone call's capture itself, and must never
    sit out another process's long transaction; it hands the capture to its writer)."""
    previous = getattr(_NO_WAIT, "on", False)
    _NO_WAIT.on = True
    try:
        yield
    finally:
        _NO_WAIT.on = previous


class SqliteTransaction(SqlTransaction):
    def lock(self, event_ids: Sequence[bytes], stream_ids: Sequence[str]) -> LogState:
        cur, tenant = self.cur, self.backend.tenant_id
        if getattr(_NO_WAIT, "on", False):
            self._begin_without_waiting()
        else:
            cur.execute("BEGIN IMMEDIATE")
        found = self.backend.select_in(
            cur,
            "SELECT event_id, position, stream_version FROM events WHERE event_id IN ({})",
            [bytearray(i) for i in event_ids],  # the sqlite3 fast path for blobs (SqliteBackend.blob)
        )
        current = self.backend.select_in(
            cur,
            "SELECT stream_id, MAX(stream_version) FROM events WHERE tenant_id = ? "
            "AND stream_id IN ({}) GROUP BY stream_id",
            stream_ids,
            lead=(tenant,),
        )
        cur.execute(
            "SELECT position, hash FROM events WHERE tenant_id = ? ORDER BY position DESC LIMIT 1", (tenant,)
        )
        head = cur.fetchone()
        return LogState(
            {bytes(eid): (pos, ver) for eid, pos, ver in found},
            dict(current),
            None if head is None else (head[0], bytes(head[1])),
        )

    def _begin_without_waiting(self) -> None:
        self.cur.execute("PRAGMA busy_timeout=0")
        try:
            self.cur.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            raise errors.LogBusyError("another writer holds the log's write lock") from None
        finally:
            self.cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def insert(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.cur.executemany(_INSERT, rows)

    def _commit(self) -> None:
        self.cur.execute("COMMIT")

    def rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # no transaction was open, or it is already gone
            self.raw.cursor().execute("ROLLBACK")


class SqliteBackend(SqlBackend):
    name = "sqlite"
    placeholder = "?"
    error_table = ERRORS
    # Blobs go in as bytearray. The sqlite3 module binds int, float, str and bytearray
    # directly but sends bytes through its adapter lookup first (a tuple key, a dict probe,
    # two attribute lookups): 0.36 us per value against 0.08, and a row has six blobs. The
    # stored value is the same BLOB.
    blob = bytearray

    def __init__(self, engine: sa.Engine, tenant_id: str, synchronous: str = "FULL",
                 autocheckpoint: bool = True) -> None:
        """``autocheckpoint=False``: this engine's commits never checkpoint the WAL; the
        caller runs a :class:`~hermes_fed.store.wal_checkpoint.WalCheckpointer` beside it."""
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        super().__init__(engine, tenant_id)

        @sa_event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            # Autocommit at the driver level; transactions are begun explicitly (the
            # pysqlite default would begin them lazily, too late to take the write lock).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # first: the pragmas wait too
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA secure_delete=ON")  # shredded subject keys are overwritten
            if not autocheckpoint:
                cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

        @sa_event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN")

    def create(self) -> None:
        _retry_locked(super().create)

    def record_fingerprints(self, fingerprints: Mapping[str, str]) -> None:
        _retry_locked(lambda: super(SqliteBackend, self).record_fingerprints(fingerprints))

    def _transaction(self, raw: Any) -> SqlTransaction:
        return SqliteTransaction(self, raw)

    def _triggers(self) -> list[str]:
        return sqlite_triggers()

    def _read_cursor(self, raw: Any) -> Any:
        return raw.cursor()

    def _read_chunk(self, raw: Any, cur: Any, query: str, params: Sequence[Any]) -> list[ReadRow]:
        cur.execute(query, params)
        rows: list[ReadRow] = cur.fetchall()
        return rows


def _retry_locked(step: Callable[[], None], timeout_s: float = 30.0) -> None:
    """Run one of the opening steps; retry it while another process holds the lock.

    Two processes opening a new log at once (a node daemon and its gateway) both begin
    deferred transactions and both upgrade to write: SQLite answers the second "database
    is locked" at once, since its busy handler cannot break that deadlock. The opening
    steps are idempotent, so the loser tries again (for up to ``timeout_s``).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            step()
            return
        except (errors.OperationalError, sa.exc.OperationalError) as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


#: The PostgreSQL advisory lock :func:`create_tables` holds while it creates tables.
_DDL_LOCK = int.from_bytes(hashlib.sha256(b"hermes_fed.create_tables").digest()[:8], "big",
                           signed=True)


def create_tables(metadata: sa.MetaData, engine: sa.Engine) -> None:
    """Create ``metadata``'s missing tables in ``engine``'s database (idempotent).

    Two processes creating them at once (a node's daemon and its gateway opening a new log,
    a gateway and its capture process) both find a table missing and both create it. On
    SQLite the second is answered "database is locked" (:func:`_retry_locked`: it tries
    again). On PostgreSQL the second CREATE TABLE fails on the catalog's unique index
    (``pg_type_typname_nsp_index``) rather than waiting, so the check and the creation run
    in one transaction under an advisory lock: the second opener finds the tables made.
    """
    if engine.dialect.name == "sqlite":
        _retry_locked(lambda: metadata.create_all(engine))
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
        metadata.create_all(conn)
