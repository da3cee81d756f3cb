"""What SQLite and PostgreSQL share: the tables, the queries both write the same way, and
the mapping of a driver's PEP 249 exceptions to ours, class by class.

SQLAlchemy creates the engine and the tables; the hot paths (append, read) use the DBAPI
cursor directly, because per-row ORM/Core overhead would cost more than the hashing and
encryption together. What differs per database (the write lock, the bulk insert, the read
cursor, the transaction calls, the append-only triggers) is a method of ``sqlite.py`` or
``postgres.py``; no code here asks which database it runs on.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import sqlalchemy as sa

from hermes_fed import errors

from .backend import READ_COLUMNS, AppendTransaction, Backend, ReadRow, SubjectKey, check_fingerprints
from .port import PlaceholderConflict, PlaceholderRow
from .schema_ddl import metadata as ddl_metadata

log = logging.getLogger(__name__)

READ_CHUNK = 2000
_IN_CHUNK = 500  # values per IN (...) list: under SQLite's and psycopg's parameter limits
_READ_SQL = ", ".join(READ_COLUMNS)

ErrorTable = Sequence[tuple[type[BaseException], type[errors.DatabaseError]]]
"""A driver's exception classes and ours, the more specific first."""

# PEP 249's exception classes, subclasses before the classes they derive from.
PEP_249 = (
    "IntegrityError",
    "OperationalError",
    "ProgrammingError",
    "DataError",
    "InternalError",
    "NotSupportedError",
    "InterfaceError",
    "DatabaseError",
    "Error",
)


def error_table(driver: ModuleType) -> ErrorTable:
    """A PEP 249 driver's exception classes, each with ours of the same name (its ``Error``
    root with our ``DatabaseError``)."""
    ours = {name: getattr(errors, name) for name in PEP_249[:-1]} | {"Error": errors.DatabaseError}
    return tuple((getattr(driver, name), ours[name]) for name in PEP_249)


def map_error(exc: BaseException, table: ErrorTable, what: str) -> errors.DatabaseError | None:
    """Our error for a driver exception (also one SQLAlchemy wrapped), or None if ``exc``
    is not the driver's. The message keeps the driver's (it names no event data)."""
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    for driver_class, ours in table:
        if isinstance(orig, driver_class):
            return ours(f"{what}: {orig}")
    return None


class SqlTransaction(AppendTransaction):
    """An append transaction on one pooled DBAPI connection."""

    def __init__(self, backend: SqlBackend, raw: Any) -> None:
        self.backend = backend
        self.raw = raw
        self.cur = raw.cursor()
        self.placeholder = backend.placeholder
        self.done = False

    def subject_keys(self, subject_ids: Sequence[str]) -> list[SubjectKey]:
        return self.backend.select_subject_keys(self.cur, subject_ids)

    def insert_subject_keys(self, keys: Sequence[SubjectKey]) -> None:
        p = self.placeholder
        for i in range(0, len(keys), 200):  # one multi-row statement per 200
            chunk = keys[i : i + 200]
            self.cur.execute(
                "INSERT INTO subject_keys (subject_id, key_ref, wrap_key_id, wrapped) VALUES "
                + ",".join([f"({p}, {p}, {p}, {p})"] * len(chunk)),
                [value for key in chunk for value in key],
            )

    def delete_subject_keys(self, subject_id: str) -> None:
        self.cur.execute(f"DELETE FROM subject_keys WHERE subject_id = {self.placeholder}", (subject_id,))

    def insert_placeholders(self, rows: Sequence[PlaceholderRow]) -> None:
        p, blob = self.placeholder, self.backend.blob
        for i in range(0, len(rows), 200):  # one multi-row statement per 200
            chunk = rows[i : i + 200]
            try:
                self.cur.execute(
                    "INSERT INTO redaction_placeholders (session_key, entity_type, digest, number) VALUES "
                    + ",".join([f"({p}, {p}, {p}, {p})"] * len(chunk)),
                    [v for s, t, d, n in chunk for v in (s, t, blob(d), n)],
                )
            except Exception as exc:
                # A unique key refused a row: numbered from a stale view. The caller's
                # transaction rolls back whole (PostgreSQL has aborted it already).
                if isinstance(map_error(exc, self.backend.error_table, ""), errors.IntegrityError):
                    raise PlaceholderConflict(
                        f"placeholder numbers of {len({r[0] for r in chunk})} session(s) changed "
                        "under this append; the gate numbers them again"
                    ) from exc
                raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.cur.execute(sql, params)
        return [tuple(r) for r in self.cur.fetchall()] if self.cur.description is not None else []

    def commit(self) -> None:
        self._commit()
        self.done = True

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def rollback(self) -> None:
        """Undo the transaction (it may already be gone)."""


class SqlBackend(Backend):
    """A log in a SQL database reached through a SQLAlchemy engine."""

    placeholder: str
    error_table: ErrorTable

    def __init__(self, engine: sa.Engine, tenant_id: str) -> None:
        self.engine = engine
        self.tenant_id = tenant_id

    # --- what each database does its own way ----------------------------------------------
    @abstractmethod
    def _transaction(self, raw: Any) -> SqlTransaction: ...

    @abstractmethod
    def _triggers(self) -> list[str]:
        """The DDL of the append-only guards (invariant 1)."""

    def _prepare_schema(self, conn: sa.Connection) -> None:
        """Runs before the tables are created, in the same transaction."""

    @abstractmethod
    def _read_cursor(self, raw: Any) -> Any: ...

    @abstractmethod
    def _read_chunk(self, raw: Any, cur: Any, query: str, params: Sequence[Any]) -> list[ReadRow]:
        """Run one chunk's query and end its read transaction."""

    def _end_read(self, raw: Any) -> None:
        """End a read on ``raw`` (a database that opened a transaction for it commits)."""

    def end_read(self, raw: Any) -> None:
        """End a caller's read on a raw connection of :attr:`engine` (see :meth:`select_in`)."""
        self._end_read(raw)

    # --- set-up ---------------------------------------------------------------------------
    @contextmanager
    def mapped(self, what: str) -> Iterator[None]:
        """Raise a driver error inside the block as ours."""
        try:
            yield
        except Exception as exc:
            ours = map_error(exc, self.error_table, what)
            if ours is None:
                raise
            raise ours from exc

    def create(self) -> None:
        with self.mapped("cannot open the event store"), self.engine.begin() as conn:
            self._prepare_schema(conn)
            ddl_metadata.create_all(conn)
            for ddl in self._triggers():
                conn.exec_driver_sql(ddl)
            columns = {c["name"] for c in sa.inspect(conn).get_columns("events")}
        if not {"key_ref", "personal"} <= columns:
            # create_all never alters an existing table: a log from before the personal
            # part had its own column would fail on the first append or read.
            raise errors.OperationalError(
                "this event log was written by an older hermes-fed store format (personal fields "
                "sealed inside the data column); it cannot be read by this version: start a new "
                "log, or read it with the version that wrote it"
            )

    def record_fingerprints(self, fingerprints: Mapping[str, str]) -> None:
        with self.mapped("cannot check the key ring"), self.engine.begin() as conn:
            stored: dict[str, str] = dict(
                conn.execute(sa.text("SELECT key_id, fingerprint FROM key_fingerprints")).all()
            )
            for key_id, fingerprint in check_fingerprints(stored, fingerprints).items():
                conn.execute(
                    sa.text("INSERT INTO key_fingerprints (key_id, fingerprint) VALUES (:k, :f)"),
                    {"k": key_id, "f": fingerprint},
                )

    def close(self) -> None:
        self.engine.dispose()

    # --- append ---------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[AppendTransaction]:
        raw = self.engine.raw_connection()
        try:
            tx = self._transaction(raw)
            try:
                yield tx
            except BaseException as exc:
                tx.rollback()
                ours = map_error(exc, self.error_table, "append failed, nothing written")
                if ours is None:
                    raise
                raise ours from exc
            if not tx.done:  # left without a commit: nothing of it stays
                tx.rollback()
        finally:
            raw.close()

    def select_in(
        self, cur: Any, query: str, values: Sequence[Any], lead: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Rows of ``query``, whose ``{}`` becomes the placeholders of ``values``, run once
        per 500 values; ``lead`` parameters come first in each run."""
        rows: list[tuple[Any, ...]] = []
        for i in range(0, len(values), _IN_CHUNK):
            chunk = values[i : i + _IN_CHUNK]
            cur.execute(query.format(",".join([self.placeholder] * len(chunk))), [*lead, *chunk])
            rows.extend(cur.fetchall())
        return rows

    def select_subject_keys(self, cur: Any, subject_ids: Sequence[str]) -> list[SubjectKey]:
        """Through the DBAPI cursor: an expanding IN through SQLAlchemy was recompiled on
        every batch."""
        query = "SELECT subject_id, key_ref, wrap_key_id, wrapped FROM subject_keys WHERE subject_id IN ({})"
        return [SubjectKey(*r) for r in self.select_in(cur, query, subject_ids)]

    def placeholders(self, session_keys: Sequence[str]) -> list[PlaceholderRow]:
        with self.mapped("cannot read the placeholder index"):
            raw = self.engine.raw_connection()
            try:
                rows = self.select_placeholders(raw.cursor(), session_keys)
                self._end_read(raw)
            finally:
                raw.close()
        return rows

    def select_placeholders(self, cur: Any, session_keys: Sequence[str]) -> list[PlaceholderRow]:
        """The stored placeholder rows of these sessions, through a DBAPI cursor of
        :attr:`engine` (a caller reading more in the same transaction ends it)."""
        query = (
            "SELECT session_key, entity_type, digest, number FROM redaction_placeholders "
            "WHERE session_key IN ({})"
        )
        rows = self.select_in(cur, query, list(session_keys))
        return [PlaceholderRow(s, t, bytes(d), int(n)) for s, t, d, n in rows]

    # --- queries --------------------------------------------------------------------------
    def stream_subjects(self, stream_ids: Sequence[str]) -> list[tuple[str, str, int]]:
        query = sa.text(
            "SELECT stream_id, subject_id, stream_version FROM events "
            "WHERE tenant_id = :t AND subject_id IS NOT NULL AND stream_id IN :s"
        ).bindparams(sa.bindparam("s", expanding=True))
        with self.mapped("cannot read the event log"), self.engine.connect() as conn:
            rows = conn.execute(query, {"t": self.tenant_id, "s": list(stream_ids)}).all()
        return [(r[0], r[1], r[2]) for r in rows]

    def subject_keys(self, subject_ids: Sequence[str]) -> list[SubjectKey]:
        with self.mapped("cannot read the subject keys"):
            raw = self.engine.raw_connection()
            try:
                keys = self.select_subject_keys(raw.cursor(), subject_ids)
                self._end_read(raw)
            finally:
                raw.close()
        return keys

    def subject_key(self, subject_id: str, key_ref: str) -> tuple[str, bytes] | None:
        query = sa.text(
            "SELECT wrap_key_id, wrapped FROM subject_keys WHERE subject_id = :s AND key_ref = :r"
        )
        with self.mapped("cannot read the subject keys"), self.engine.connect() as conn:
            row = conn.execute(query, {"s": subject_id, "r": key_ref}).first()
        return None if row is None else (row[0], bytes(row[1]))

    def head(self) -> int:
        query = sa.text("SELECT MAX(position) FROM events WHERE tenant_id = :t")
        with self.mapped("cannot read the event log"), self.engine.connect() as conn:
            value = conn.execute(query, {"t": self.tenant_id}).scalar()
        return int(value or 0)

    def read(self, after: int, limit: int | None, types: Collection[str] | None) -> Iterator[list[ReadRow]]:
        if types is None:
            return self._chunks("position >", (after,), "position", limit)
        p = self.placeholder
        return self._chunks(
            f"type IN ({','.join([p] * len(types))}) AND position >", (*types, after), "position", limit
        )

    def read_stream(self, stream_id: str, after_version: int) -> Iterator[list[ReadRow]]:
        return self._chunks(
            f"stream_id = {self.placeholder} AND stream_version >",
            (stream_id, after_version),
            "stream_version",
            None,
        )

    def _chunks(
        self, where: str, params: tuple[Any, ...], order: str, limit: int | None
    ) -> Iterator[list[ReadRow]]:
        """Keyset-paginated rows, so no read transaction is held open for long. ``where``
        ends in the keyset comparison whose value is the last of ``params``."""
        p = self.placeholder
        lead, last = (self.tenant_id, *params[:-1]), params[-1]
        key = READ_COLUMNS.index(order)
        with self.mapped("cannot read the event log"):
            raw = self.engine.raw_connection()
            try:
                cur = self._read_cursor(raw)
                remaining = limit
                while remaining is None or remaining > 0:
                    n = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                    query = (
                        f"SELECT {_READ_SQL} FROM events WHERE tenant_id = {p} AND {where} {p} "
                        f"ORDER BY {order} LIMIT {n}"
                    )
                    rows = self._read_chunk(raw, cur, query, (*lead, last))
                    yield rows
                    if len(rows) < n:
                        return
                    last = rows[-1][key]
                    if remaining is not None:
                        remaining -= len(rows)
            finally:
                raw.close()
