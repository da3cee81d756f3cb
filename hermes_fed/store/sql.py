"""The SQLAlchemy event store: SQLite (default, one file per tenant, WAL) and PostgreSQL.

SQLAlchemy creates the engine and the tables; the hot paths (append, read) use the DBAPI
cursor directly, because per-row ORM/Core overhead would cost more than the hashing and
encryption together.

Appends are serialised per log (invariant 4): SQLite takes the write lock up front with
``BEGIN IMMEDIATE``; PostgreSQL takes a transaction-scoped advisory lock. Positions are
assigned under that lock, so position order is commit order and a reader of
``position > checkpoint`` never skips an event (a bigserial would leave gaps that commit
out of order).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy import event as sa_event

from hermes_fed.errors import (
    ConcurrencyError,
    CorruptEventError,
    IntegrityError,
    KeyringError,
    OperationalError,
    SchemaError,
)
from hermes_fed.events import DEFAULT_CATALOG, Catalog, NewEvent, StoredEvent, to_micros
from hermes_fed.events.codec import canonical_json, json_problem
from hermes_fed.events.erasure import SubjectErased
from hermes_fed.events.schema import EventSchema

from . import chain, payload
from .keyring import NONCE, Keyring, key_cipher
from .port import AppendResult, EventStore, Gate, VerifyReport
from .schema_ddl import metadata as ddl_metadata
from .schema_ddl import postgres_triggers, sqlite_triggers

log = logging.getLogger(__name__)

_COLUMNS = (
    "tenant_id, position, event_id, stream_id, stream_version, type, schema_version, "
    "occurred_at, recorded_at, key_id, subject_id, key_ref, data, personal, metadata, prev_hash, hash"
)
_N_COLUMNS = 17
# fmt: off
_PG_TYPES = [
    "varchar", "int8", "bytea", "varchar", "int4", "varchar", "int4", "int8", "int8",
    "varchar", "varchar", "varchar", "bytea", "bytea", "bytea", "bytea", "bytea",
]
# fmt: on
_READ_COLUMNS = (
    "position, event_id, stream_id, stream_version, type, schema_version, occurred_at, "
    "recorded_at, key_id, subject_id, key_ref, data, personal, metadata, prev_hash, hash"
)
_SUBJECT, _PERSONAL = 9, 12  # indexes in a row of _READ_COLUMNS
READ_CHUNK = 2000
_STREAM_SUBJECT_CACHE = 100_000
# Canonical JSON (sorted keys) that refuses datetimes and dataclasses instead of turning
# them into strings/objects; what it still converts silently (UUIDs, enums, NaN -> null)
# fails the decode-and-compare check in ``_encode``.
_ENCODE = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _checked_json(event: NewEvent, schema: EventSchema, part: dict[str, Any]) -> bytes:
    """Canonical JSON of ``part``, which must decode to exactly ``part`` again."""
    try:
        raw: bytes | None = orjson.dumps(part, option=_ENCODE)
    except TypeError:
        raw = None
    if raw is None or orjson.loads(raw) != part:
        schema.validate(event.data)  # raises the SchemaError naming the field
        if raw is None:
            raise SchemaError(event.type, "<data>", "not JSON-serialisable")
    return raw


class _ReadRow(NamedTuple):
    """A row of ``_READ_COLUMNS`` by name (the hot read path unpacks the tuple instead)."""

    position: int
    event_id: bytes
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    occurred_at: int
    recorded_at: int
    key_id: str
    subject_id: str | None
    key_ref: str | None
    data: bytes
    personal: bytes | None
    metadata: bytes
    prev_hash: bytes
    hash: bytes


class _Sealed(NamedTuple):
    """An event encoded for storage; only position-dependent fields are left to fill."""

    event: NewEvent
    event_id: bytes
    schema_version: int
    occurred_at: int
    key_id: str
    subject_id: str | None
    key_ref: str | None
    data: bytes
    personal: bytes | None
    metadata: bytes


class SqlEventStore(EventStore):
    """An :class:`EventStore` on SQLite or PostgreSQL."""

    def __init__(
        self,
        url: str,
        tenant_id: str,
        *,
        keyring: Keyring | None = None,
        schema: str | None = None,
        gate: Gate | None = None,
        catalog: Catalog = DEFAULT_CATALOG,
        synchronous: str = "FULL",
    ) -> None:
        if not tenant_id or len(tenant_id) > 64:
            raise ValueError(f"tenant_id must be 1..64 characters, got {tenant_id!r}")
        if keyring is not None and keyring.tenant_id != tenant_id:
            raise KeyringError(f"key ring belongs to tenant {keyring.tenant_id!r}, not {tenant_id!r}")
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        self.tenant_id = tenant_id
        self.keyring = keyring
        self.gate = gate
        self.catalog = catalog
        self.schema = schema
        self._subject_cache: dict[tuple[str, str], bytes | None] = {}
        self._prefetched: set[str] = set()
        self._stream_subjects: dict[str, str | None] = {}
        self._lock = threading.Lock()  # one appender per process at a time (the DB lock spans processes)
        engine = sa.create_engine(url, future=True)
        self.dialect = engine.dialect.name
        if self.dialect == "sqlite":
            self._setup_sqlite(engine, synchronous)
            self._p = "?"
            self._t = ""
        elif self.dialect == "postgresql":
            self._p = "%s"
            self._t = ""
            if schema:
                self._setup_postgres(engine, schema)
        else:
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite or postgresql")
        self.engine = engine
        self._lock_key = int.from_bytes(
            hashlib.sha256(f"{schema}.{tenant_id}".encode()).digest()[:8], "big", signed=True
        )
        self._create_schema()
        self._check_keys()

    # --- set-up ------------------------------------------------------------------------
    @staticmethod
    def _setup_sqlite(engine: sa.Engine, synchronous: str) -> None:
        @sa_event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            # Autocommit at the driver level; transactions are begun explicitly (the
            # pysqlite default would begin them lazily, too late to take the write lock).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA secure_delete=ON")  # shredded subject keys are overwritten
            cur.close()

        @sa_event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN")

    @staticmethod
    def _setup_postgres(engine: sa.Engine, schema: str) -> None:
        # search_path on every pooled connection: raw SQL, text() and the projections'
        # tables all land in the tenant's schema.
        @sa_event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute(f'SET search_path TO "{schema}"')
            dbapi_conn.commit()

    def _create_schema(self) -> None:
        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql" and self.schema:
                    conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                    # Concurrent openers of a fresh schema race on CREATE TABLE.
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                ddl_metadata.create_all(conn)
                triggers = (
                    sqlite_triggers()
                    if self.dialect == "sqlite"
                    else postgres_triggers(self.schema or "public")
                )
                for ddl in triggers:
                    conn.exec_driver_sql(ddl)
                columns = {c["name"] for c in sa.inspect(conn).get_columns("events")}
        except sa.exc.OperationalError as exc:
            raise OperationalError(f"cannot open the event store: {exc.orig}") from None
        if not {"key_ref", "personal"} <= columns:
            # create_all never alters an existing table: a log from before the personal
            # part had its own column would fail on the first append or read.
            raise OperationalError(
                "this event log was written by an older hermes-fed store format (personal fields "
                "sealed inside the data column); it cannot be read by this version: start a new "
                "log, or read it with the version that wrote it"
            )

    def _check_keys(self) -> None:
        """Refuse a key ring whose keys differ from those the log was written with."""
        if self.keyring is None:
            return
        with self.engine.begin() as conn:
            rows: dict[str, str] = dict(
                conn.execute(sa.text("SELECT key_id, fingerprint FROM key_fingerprints")).all()
            )
            for key_id in self.keyring.keys:
                mine = self.keyring.fingerprint(key_id)
                if key_id in rows and rows[key_id] != mine:
                    raise KeyringError(
                        f"key {key_id!r} in the key ring is not the key this log was written with"
                    )
                if key_id not in rows:
                    conn.execute(
                        sa.text("INSERT INTO key_fingerprints (key_id, fingerprint) VALUES (:k, :f)"),
                        {"k": key_id, "f": mine},
                    )

    # --- append ------------------------------------------------------------------------
    def append(
        self,
        events: Sequence[NewEvent],
        expected_versions: Mapping[str, int] | None = None,
    ) -> list[AppendResult]:
        if not events:
            return []
        if self.gate is not None:
            events = list(self.gate(events))
        schemas = [self._schema_of(e) for e in events]
        batch_subjects = self._stream_subjects_of(
            e.stream_id
            for e, schema in zip(events, schemas, strict=True)
            if e.subject is None and schema.personal
        )
        # Validation and encoding happen before any lock is taken, and every event is
        # validated before any subject key is created, so a bad batch writes nothing.
        encoded = [self._encode(e, schema, batch_subjects) for e, schema in zip(events, schemas, strict=True)]
        # One connection for the whole append: the subject-key lookup, then the write.
        raw = self.engine.raw_connection()
        try:
            sealing = {s for s, _, personal in encoded if s is not None and personal is not None}
            keys, new_keys = self._subject_keys(sealing, raw)
            sealed = self._seal(events, schemas, encoded, keys)
            # New subject keys are stored in the events' own transaction: all or nothing.
            results = self._write(sealed, expected_versions or {}, extra_sql=new_keys, raw=raw)
        finally:
            raw.close()
        for stream_id, subject_id in batch_subjects.items():
            if subject_id is not None:
                self._stream_subjects.setdefault(stream_id, subject_id)
        return results

    def _schema_of(self, event: NewEvent) -> EventSchema:
        if not isinstance(event.stream_id, str) or not 0 < len(event.stream_id) <= 200:
            raise SchemaError(event.type, "<stream_id>", "must be a string of 1..200 characters")
        schema = self.catalog.schema(event.type)
        problem = json_problem(event.metadata)
        if problem:
            raise SchemaError(event.type, "<metadata>", problem)
        return schema

    def _subject_of(
        self, event: NewEvent, schema: EventSchema, batch_subjects: dict[str, str | None]
    ) -> str | None:
        if event.subject is not None:
            if self.keyring is None:
                raise KeyringError("events with a subject need a key ring (per-subject keys)")
            subject_id = self.keyring.subject_id(event.subject)
            batch_subjects.setdefault(event.stream_id, subject_id)
            return subject_id
        if schema.personal:
            # Personal fields of a stream follow the subject of the stream's first event
            # that named one (possibly earlier in this very batch).
            return batch_subjects.get(event.stream_id)
        return None

    def _encode(
        self, event: NewEvent, schema: EventSchema, batch_subjects: dict[str, str | None]
    ) -> tuple[str | None, bytes, bytes | None]:
        """(subject id, canonical JSON of the public part, of the personal part or None
        when there is nothing to seal) of a validated event.

        The nested values are checked by encoding them and comparing the decoded bytes
        with the input (two C calls, a third of a Python walk over the values): anything
        JSON would not give back unchanged fails that check, and only then does the full
        validation walk run, to name the field and the value's type in the error.
        """
        data = schema.validate(event.data, deep=False)
        subject_id = self._subject_of(event, schema, batch_subjects)
        if subject_id is not None and schema.personal:
            public, personal = payload.split_personal(data, schema.personal)
        else:
            public, personal = data, {}
        public_json = _checked_json(event, schema, public)
        return subject_id, public_json, _checked_json(event, schema, personal) if personal else None

    def _seal(
        self,
        events: Sequence[NewEvent],
        schemas: Sequence[EventSchema],
        encoded: Sequence[tuple[str | None, bytes, bytes | None]],
        subject_keys: Mapping[str, tuple[bytes, str]],
    ) -> list[_Sealed]:
        """Encrypt the encoded events (one loop: per-event helper calls and keyword
        construction had cost a sixth of the append)."""
        keyring = self.keyring
        out: list[_Sealed] = []
        for event, schema, (subject_id, public_json, personal_json) in zip(
            events, schemas, encoded, strict=True
        ):
            event_id = event.event_id.bytes
            key_ref = personal = None
            if personal_json is not None:
                assert subject_id is not None
                key, key_ref = subject_keys[subject_id]
                personal = payload.seal_personal(personal_json, event_id, key)
            key_id, blob = payload.encrypt_data(keyring, public_json, event_id)
            metadata = event.metadata
            out.append(
                _Sealed(
                    event,
                    event_id,
                    schema.version,
                    to_micros(event.occurred_at),
                    key_id,
                    subject_id,
                    key_ref,
                    blob,
                    personal,
                    orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS)
                    if type(metadata) is dict
                    else canonical_json(dict(metadata)),
                )
            )
        return out

    def _write(
        self,
        sealed: list[_Sealed],
        expected: Mapping[str, int],
        extra_sql: Sequence[tuple[str, tuple[Any, ...]]] = (),
        raw: Any = None,
    ) -> list[AppendResult]:
        p, t = self._p, self._t
        own = raw is None
        with self._lock:
            if own:
                raw = self.engine.raw_connection()
            try:
                cur = raw.cursor()
                ids = list(dict.fromkeys(s.event_id for s in sealed))
                all_streams = list(dict.fromkeys(s.event.stream_id for s in sealed))
                if self.dialect == "sqlite":
                    cur.execute("BEGIN IMMEDIATE")
                    existing, versions, head = self._log_state(cur, ids, all_streams)
                else:
                    existing, versions, head = self._log_state_pg(raw, ids, all_streams)
                fresh = [s for s in sealed if s.event_id not in existing]
                streams: list[str] = list(dict.fromkeys(s.event.stream_id for s in fresh))
                for stream_id, want in expected.items():
                    if stream_id in streams and versions.get(stream_id, 0) != want:
                        raise ConcurrencyError(stream_id, versions.get(stream_id, 0), want)
                position, prev = (head[0], bytes(head[1])) if head else (0, chain.GENESIS)
                recorded_at = time.time_ns() // 1000
                # SQLite: blobs go in as bytearray. The sqlite3 module binds int, float, str
                # and bytearray directly but sends bytes through its adapter lookup first
                # (a tuple key, a dict probe, two attribute lookups): 0.36 us per value
                # against 0.08, and a row has six blobs. The stored value is the same BLOB.
                blob: Any = bytearray if self.dialect == "sqlite" else bytes
                rows = []
                results: dict[bytes, AppendResult] = {}
                for s in fresh:
                    if s.event_id in results:  # the same id twice in one batch
                        continue
                    position += 1
                    version = versions.get(s.event.stream_id, 0) + 1
                    versions[s.event.stream_id] = version
                    env = chain.envelope_bytes(
                        event_id=s.event_id,
                        tenant_id=self.tenant_id,
                        stream_id=s.event.stream_id,
                        stream_version=version,
                        position=position,
                        type=s.event.type,
                        schema_version=s.schema_version,
                        occurred_at=s.occurred_at,
                        recorded_at=recorded_at,
                        key_id=s.key_id,
                        subject_id=s.subject_id,
                        key_ref=s.key_ref,
                    )
                    digest = chain.link(prev, env, s.data, s.personal, s.metadata)
                    rows.append(
                        (
                            self.tenant_id,
                            position,
                            blob(s.event_id),
                            s.event.stream_id,
                            version,
                            s.event.type,
                            s.schema_version,
                            s.occurred_at,
                            recorded_at,
                            s.key_id,
                            s.subject_id,
                            s.key_ref,
                            blob(s.data),
                            None if s.personal is None else blob(s.personal),
                            blob(s.metadata),
                            blob(prev),
                            blob(digest),
                        )
                    )
                    prev = digest
                    results[s.event_id] = AppendResult(s.event.event_id, position, version, False)
                if rows and self.dialect == "postgresql":
                    # COPY: one stream of binary rows instead of a Bind/Execute per row
                    # (executemany cost ~3x the client CPU and twice the server time).
                    with cur.copy(f"COPY {t}events ({_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
                        copy.set_types(_PG_TYPES)
                        for row in rows:
                            copy.write_row(row)
                elif rows:
                    values = ",".join([p] * _N_COLUMNS)
                    cur.executemany(f"INSERT INTO {t}events ({_COLUMNS}) VALUES ({values})", rows)
                for sql, params in extra_sql:
                    cur.execute(sql.format(t=t, p=p), params)
                if self.dialect == "sqlite":
                    cur.execute("COMMIT")
                else:
                    raw.commit()
            except BaseException as exc:
                self._rollback(raw)
                if isinstance(exc, sa.exc.DBAPIError) or type(exc).__module__.startswith(
                    ("sqlite3", "psycopg")
                ):
                    raise OperationalError(f"append failed, nothing written: {exc}") from exc
                raise
            finally:
                if own:
                    raw.close()
        for eid, (pos, ver) in existing.items():
            results[eid] = AppendResult(uuid.UUID(bytes=eid), pos, ver, True)
        return [results[s.event_id] for s in sealed]

    def _log_state(
        self, cur: Any, ids: list[bytes], streams: list[str]
    ) -> tuple[dict[bytes, tuple[int, int]], dict[str, int], tuple[Any, ...] | None]:
        """Under the write lock: (position, version) of the ids already stored, the current
        version of each stream, and the head row (position, hash), or None."""
        p, t = self._p, self._t
        found = self._select_in(
            cur,
            f"SELECT event_id, position, stream_version FROM {t}events WHERE event_id IN ({{}})",
            [bytearray(i) for i in ids],  # the sqlite3 fast path for blobs (see _write)
        )
        existing = {bytes(eid): (pos, ver) for eid, pos, ver in found}
        current = self._select_in(
            cur,
            f"SELECT stream_id, MAX(stream_version) FROM {t}events WHERE tenant_id = {p} "
            "AND stream_id IN ({}) GROUP BY stream_id",
            streams,
            lead=(self.tenant_id,),
        )
        versions: dict[str, int] = dict(current)
        cur.execute(
            f"SELECT position, hash FROM {t}events WHERE tenant_id = {p} ORDER BY position DESC LIMIT 1",
            (self.tenant_id,),
        )
        return existing, versions, cur.fetchone()

    def _select_in(
        self, cur: Any, query: str, values: Sequence[Any], lead: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Rows of ``query``, whose ``{}`` becomes the placeholders of ``values``, run once
        per 500 values (SQLite's and psycopg's parameter limits); ``lead`` parameters come
        first in each run."""
        rows: list[tuple[Any, ...]] = []
        for i in range(0, len(values), 500):
            chunk = values[i : i + 500]
            cur.execute(query.format(",".join([self._p] * len(chunk))), [*lead, *chunk])
            rows.extend(cur.fetchall())
        return rows

    def _log_state_pg(
        self, raw: Any, ids: list[bytes], streams: list[str]
    ) -> tuple[dict[bytes, tuple[int, int]], dict[str, int], tuple[Any, ...] | None]:
        """:meth:`_log_state` on PostgreSQL: the advisory lock and the three queries go in
        one pipeline (one round trip instead of four; the server still runs them in order,
        so the queries see the log as it is under the lock)."""
        conn = raw.driver_connection
        lock, known, current, top = (conn.cursor() for _ in range(4))
        # prepare=False: after five runs psycopg prepares a statement server-side, and the
        # generic plan PostgreSQL then picks for "= ANY($1)" scanned the whole table: each
        # append grew slower with the log (150 -> 2000 us per batch over 50k events).
        with conn.pipeline():
            lock.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,), prepare=False)
            # %b: the ids as a binary bytea[]; as text every id was hex-escaped (a regex
            # per element) and parsed back by the server, 0.69 ms a batch of 100 against 0.25.
            known.execute(
                "SELECT event_id, position, stream_version FROM events WHERE event_id = ANY(%b)",
                (ids,),
                prepare=False,
            )
            current.execute(
                "SELECT stream_id, MAX(stream_version) FROM events WHERE tenant_id = %s "
                "AND stream_id = ANY(%s) GROUP BY stream_id",
                (self.tenant_id, streams),
                prepare=False,
            )
            top.execute(
                "SELECT position, hash FROM events WHERE tenant_id = %s ORDER BY position DESC LIMIT 1",
                (self.tenant_id,),
                prepare=False,
            )
        existing = {bytes(eid): (pos, ver) for eid, pos, ver in known.fetchall()}
        versions = {sid: ver for sid, ver in current.fetchall()}
        return existing, versions, top.fetchone()

    def _rollback(self, raw: Any) -> None:
        try:
            if self.dialect == "sqlite":
                raw.cursor().execute("ROLLBACK")
            else:
                raw.rollback()
        except Exception:  # the transaction may already be gone
            log.debug("rollback after a failed append also failed", exc_info=True)

    # --- subjects ----------------------------------------------------------------------
    def _stream_subjects_of(self, stream_ids: Iterable[str]) -> dict[str, str | None]:
        """Subjects of streams: that of each stream's first event naming one (append-only,
        so once known it never changes and is cached). One query per batch."""
        if len(self._stream_subjects) > _STREAM_SUBJECT_CACHE:  # a daemon sees endless sessions
            self._stream_subjects.clear()
        asked = list(dict.fromkeys(stream_ids))
        wanted = [s for s in asked if s not in self._stream_subjects]
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT stream_id, subject_id, stream_version FROM events "
                        "WHERE tenant_id = :t AND subject_id IS NOT NULL AND stream_id IN :s"
                    ).bindparams(sa.bindparam("s", expanding=True)),
                    {"t": self.tenant_id, "s": chunk},
                ).all()
            for stream_id, subject_id, _ in sorted(rows, key=lambda r: -r[2]):
                self._stream_subjects[stream_id] = subject_id
        return {s: self._stream_subjects[s] for s in asked if s in self._stream_subjects}

    def _subject_keys(
        self, subject_ids: set[str], raw: Any = None
    ) -> tuple[dict[str, tuple[bytes, str]], list[tuple[str, tuple[Any, ...]]]]:
        """The (key, ref) of each subject, one query per batch (a transaction per event cost
        more than the whole append), and the INSERTs of the keys that had to be made (one
        multi-row statement per 200), for the caller to run inside its append transaction."""
        out: dict[str, tuple[bytes, str]] = {}
        inserts: list[tuple[str, tuple[Any, ...]]] = []
        if not subject_ids:
            return out, inserts
        assert self.keyring is not None
        wanted = sorted(subject_ids)
        for subject_id, ref, wrap_id, wrapped in sorted(self._fetch_subject_keys(wanted, raw)):
            if subject_id not in out:  # the lowest ref, as before
                out[subject_id] = (self.keyring.unwrap(wrap_id, bytes(wrapped), subject_id), ref)
        made: list[tuple[str, str, str, bytes]] = []
        for subject_id in wanted:
            if subject_id not in out:
                key, ref = payload.new_subject_key()
                wrap_id, wrapped = self.keyring.wrap(key, subject_id)
                made.append((subject_id, ref, wrap_id, wrapped))
                out[subject_id] = (key, ref)
        for i in range(0, len(made), 200):
            chunk = made[i : i + 200]
            inserts.append(
                (
                    "INSERT INTO {t}subject_keys (subject_id, key_ref, wrap_key_id, wrapped) VALUES "
                    + ",".join(["({p}, {p}, {p}, {p})"] * len(chunk)),
                    tuple(value for row in chunk for value in row),
                )
            )
        for subject_id, (key, ref) in out.items():
            self._subject_cache[(subject_id, ref)] = key
        return out, inserts

    def _lookup_subject_key(self, subject_id: str, ref: str) -> bytes | None:
        cached = self._subject_cache.get((subject_id, ref), b"")
        if cached != b"":
            return cached
        if self.keyring is None:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT wrap_key_id, wrapped FROM subject_keys WHERE subject_id = :s AND key_ref = :r"
                ),
                {"s": subject_id, "r": ref},
            ).first()
        key = None if row is None else self.keyring.unwrap(row[0], bytes(row[1]), subject_id)
        self._subject_cache[(subject_id, ref)] = key
        return key

    def erase_subject(self, user_ref: str, reason: str = "") -> int:
        if self.keyring is None:
            raise KeyringError("erasure needs a key ring: without one there are no subject keys to destroy")
        subject_id = self.keyring.subject_id(user_ref)
        event = NewEvent(
            stream_id=f"subject-{subject_id}",
            type=SubjectErased.TYPE,
            data={"user_ref": user_ref, "reason": reason},
            subject=user_ref,
        )
        schema = self._schema_of(event)
        subject_keys, new_keys = self._subject_keys({subject_id})
        sealed = self._seal([event], [schema], [self._encode(event, schema, {})], subject_keys)
        # The key is destroyed in the same transaction that records the erasure.
        result = self._write(
            sealed,
            {},
            extra_sql=[*new_keys, ("DELETE FROM {t}subject_keys WHERE subject_id = {p}", (subject_id,))],
        )
        for key in [k for k in self._subject_cache if k[0] == subject_id]:
            self._subject_cache[key] = None
        log.info("subject erased subject_id=%s position=%d", subject_id, result[0].position)
        return result[0].position

    # --- read --------------------------------------------------------------------------
    def _rows(
        self, where: str, params: tuple[Any, ...], order: str, limit: int | None
    ) -> Iterator[tuple[Any, ...]]:
        for chunk in self._chunks(where, params, order, limit):
            yield from chunk

    def _chunks(
        self, where: str, params: tuple[Any, ...], order: str, limit: int | None
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Keyset-paginated rows, so no read transaction is held open for long."""
        p, t = self._p, self._t
        raw = self.engine.raw_connection()
        try:
            # PostgreSQL: binary results (bytea and integers as raw bytes, not hex text to parse)
            driver: Any = raw.driver_connection
            cur: Any = raw.cursor() if self.dialect == "sqlite" else driver.cursor(binary=True)
            last = params[-1]
            remaining = limit
            while remaining is None or remaining > 0:
                n = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                if self.dialect == "postgresql":
                    # On a log that grew since the last ANALYZE the planner guessed a few
                    # rows and chose a bitmap scan of the whole rest of the log plus an
                    # on-disk sort, for every chunk (quadratic replay). The primary key
                    # already gives position order: forbid the sort.
                    # Not prepared either (see _log_state_pg: generic plans scan).
                    cur.execute("SET LOCAL enable_sort = off")
                query = (
                    f"SELECT {_READ_COLUMNS} FROM {t}events WHERE tenant_id = {p} AND {where} {p} "
                    f"ORDER BY {order} LIMIT {n}"
                )
                if self.dialect == "postgresql":
                    cur.execute(query, (*params[:-1], last), prepare=False)
                else:
                    cur.execute(query, (*params[:-1], last))
                rows = cur.fetchall()
                if self.dialect == "postgresql":
                    raw.commit()
                yield list(rows)
                if len(rows) < n:
                    return
                last = rows[-1][0] if order == "position" else rows[-1][3]
                if remaining is not None:
                    remaining -= len(rows)
        finally:
            raw.close()

    def _decode(self, row: tuple[Any, ...], lazy: bool = False) -> StoredEvent:
        (
            position,
            eid,
            stream_id,
            version,
            etype,
            schema_version,
            occurred_at,
            recorded_at,
            key_id,
            subject_id,
            key_ref,
            blob,
            personal,
            meta,
            prev_hash,
            digest,
        ) = row
        event_id = bytes(eid)
        data: dict[str, Any] | None
        erased: tuple[str, ...]
        if lazy:
            data, erased = None, ()
            loader = functools.partial(
                self._payload,
                position,
                event_id,
                etype,
                schema_version,
                key_id,
                blob,
                subject_id,
                key_ref,
                personal,
            )
        else:
            loader = None
            data, erased = self._payload(
                position, event_id, etype, schema_version, key_id, blob, subject_id, key_ref, personal
            )
        return StoredEvent(
            position,
            event_id,
            self.tenant_id,
            stream_id,
            version,
            etype,
            schema_version,
            occurred_at,
            recorded_at,
            data,
            bytes(meta),
            bytes(prev_hash),
            bytes(digest),
            erased,
            loader=loader,
        )

    def _decode_eager(self, row: tuple[Any, ...], lazy: bool = False) -> StoredEvent:
        """:meth:`_decode` of an encrypted row, in one frame for the common case (current
        schema version, tenant key in the ring, subject key cached by the read's prefetch):
        a replay decodes every event, and the general path's six nested calls per event
        cost a quarter of it. Anything else (an unknown key, an erased subject, an old
        schema version, a row that fails authentication) goes the general way, which
        raises the named errors."""
        (position, eid, stream_id, version, etype, schema_version, occurred_at, recorded_at,
         key_id, subject_id, key_ref, blob, personal, meta, prev_hash, digest) = row
        assert self.keyring is not None
        try:
            event_id = bytes(eid)
            data = orjson.loads(
                self.keyring.cipher(key_id).decrypt(blob[:NONCE], blob[NONCE:], event_id))
            if personal is not None:
                key = self._subject_cache[(subject_id, key_ref)]
                if key is None:  # erased: the general path names the fields
                    raise LookupError(subject_id)
                data.update(orjson.loads(
                    key_cipher(key).decrypt(personal[:NONCE], personal[NONCE:],
                                            event_id + payload.PERSONAL_AAD)))
            if schema_version != self.catalog.schema(etype).version:
                raise LookupError(etype)
        except Exception:
            return self._decode(row)
        if type(data) is not dict:
            return self._decode(row)
        return StoredEvent(position, event_id, self.tenant_id, stream_id, version, etype,
                           schema_version, occurred_at, recorded_at, data, bytes(meta),
                           bytes(prev_hash), bytes(digest))

    def _payload(
        self,
        position: int,
        event_id: bytes,
        etype: str,
        schema_version: int,
        key_id: str,
        blob: bytes,
        subject_id: str | None,
        key_ref: str | None,
        personal: bytes | None,
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """Decrypt and parse a row's payload: ``(data, erased_fields)``."""
        data = payload.decrypt_data(self.keyring, key_id, bytes(blob), event_id, position)
        erased: tuple[str, ...] = ()
        if personal is not None:
            if subject_id is None or key_ref is None:
                raise CorruptEventError(f"position {position}: personal fields without a subject key")
            key = self._lookup_subject_key(subject_id, key_ref)
            if key is None:  # the subject was erased: its fields read as null
                erased = payload.sealed_names(data, self.catalog.schema(etype).personal)
                data.update(dict.fromkeys(erased))
            else:
                data.update(payload.open_personal(bytes(personal), event_id, key, position))
        if schema_version != self.catalog.schema(etype).version:
            data = self.catalog.upcast(etype, schema_version, data)
        return data, erased

    def _forget_subject_keys(self) -> None:
        # Subject keys are cached for one read only: another process may erase a subject
        # (delete its key) at any time, and a long-lived reader must then stop decrypting.
        self._subject_cache = {}
        self._prefetched = set()

    def _prefetch_subject_keys(self, rows: list[tuple[Any, ...]]) -> None:
        """Load the keys of every subject in ``rows`` with one query (a query per subject
        and read made up a third of a projection rebuild). A miss still falls back to
        ``_lookup_subject_key``'s own query, so a key made later is found too."""
        if self.keyring is None:
            return
        wanted = sorted({r[_SUBJECT] for r in rows if r[_PERSONAL] is not None} - self._prefetched)
        if not wanted:
            return
        for subject_id, ref, wrap_id, wrapped in self._fetch_subject_keys(wanted):
            self._subject_cache[(subject_id, ref)] = self.keyring.unwrap(wrap_id, bytes(wrapped), subject_id)
        self._prefetched.update(wanted)

    def _fetch_subject_keys(self, subject_ids: list[str], raw: Any = None) -> list[tuple[Any, ...]]:
        """Rows (subject_id, key_ref, wrap_key_id, wrapped) of the subjects, through the DBAPI
        cursor (an expanding IN through SQLAlchemy was recompiled on every batch). With
        ``raw``, on that connection, inside the caller's transaction."""
        out: list[tuple[Any, ...]] = []
        own = raw is None
        if own:
            raw = self.engine.raw_connection()
        try:
            query = (
                f"SELECT subject_id, key_ref, wrap_key_id, wrapped FROM {self._t}subject_keys "
                "WHERE subject_id IN ({})"
            )
            out.extend(tuple(r) for r in self._select_in(raw.cursor(), query, subject_ids))
            if own and self.dialect == "postgresql":
                raw.commit()
        finally:
            if own:
                raw.close()
        return out

    def read(
        self,
        after: int = 0,
        limit: int | None = None,
        *,
        types: Collection[str] | None = None,
        lazy: bool = False,
    ) -> Iterator[StoredEvent]:
        self._forget_subject_keys()
        where = "position >"
        params: tuple[Any, ...] = (self.tenant_id, after)
        if types is not None:
            wanted = sorted(set(types))
            if not wanted:
                return
            where = f"type IN ({','.join([self._p] * len(wanted))}) AND position >"
            params = (self.tenant_id, *wanted, after)
        decode = self._decode if lazy or self.keyring is None else self._decode_eager
        for chunk in self._chunks(where, params, "position", limit):
            self._prefetch_subject_keys(chunk)
            for row in chunk:
                yield decode(row, lazy)

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[StoredEvent]:
        self._forget_subject_keys()
        rows = self._rows(
            f"stream_id = {self._p} AND stream_version >",
            (self.tenant_id, stream_id, after_version),
            "stream_version",
            None,
        )
        return [self._decode(r) for r in rows]

    def head(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.text("SELECT MAX(position) FROM events WHERE tenant_id = :t"), {"t": self.tenant_id}
            ).scalar()
        return int(value or 0)

    def verify(self) -> VerifyReport:
        prev, expected_position, checked = chain.GENESIS, 1, 0
        for raw_row in self._rows("position >", (self.tenant_id, 0), "position", None):
            row = _ReadRow(*raw_row)
            position = row.position
            if position != expected_position:
                return VerifyReport(
                    False,
                    checked,
                    position,
                    expected_position,
                    f"position {expected_position} is missing (next row is {position})",
                )
            if bytes(row.prev_hash) != prev:
                return VerifyReport(
                    False, checked, position, position, "prev_hash does not match the previous event's hash"
                )
            env = chain.envelope_bytes(
                event_id=bytes(row.event_id),
                tenant_id=self.tenant_id,
                stream_id=row.stream_id,
                stream_version=row.stream_version,
                position=position,
                type=row.type,
                schema_version=row.schema_version,
                occurred_at=row.occurred_at,
                recorded_at=row.recorded_at,
                key_id=row.key_id,
                subject_id=row.subject_id,
                key_ref=row.key_ref,
            )
            sealed = None if row.personal is None else bytes(row.personal)
            digest = bytes(row.hash)
            if chain.link(prev, env, bytes(row.data), sealed, bytes(row.metadata)) != digest:
                return VerifyReport(
                    False,
                    checked,
                    position,
                    position,
                    "hash mismatch: the row's envelope, data or metadata was altered",
                )
            prev = digest
            expected_position += 1
            checked += 1
        return VerifyReport(True, checked, expected_position - 1)

    def check_readable(self) -> None:
        """Decode every event (raises the named error of the first bad one)."""
        for _ in self.read():
            pass

    def close(self) -> None:
        self.engine.dispose()


def open_store(
    url: str,
    tenant_id: str,
    *,
    keyring: Keyring | None = None,
    schema: str | None = None,
    gate: Gate | None = None,
    catalog: Catalog = DEFAULT_CATALOG,
    synchronous: str = "FULL",
) -> SqlEventStore:
    """Open (creating if needed) the tenant's log at ``url``.

    ``sqlite:///path/tenant.db`` (the default, one file per tenant) or
    ``postgresql+psycopg://user@host:5432/db`` (with ``schema`` to isolate a tenant).
    """
    if keyring is None:
        log.warning("event store for tenant=%s opened WITHOUT encryption at rest (no key ring)", tenant_id)
    return SqlEventStore(
        url, tenant_id, keyring=keyring, schema=schema, gate=gate, catalog=catalog, synchronous=synchronous
    )


__all__ = ["CorruptEventError", "IntegrityError", "SqlEventStore", "open_store"]
