"""The log in memory: the same rows, chain and sealing as on disk, kept in this process.

For tests and tools that need a log and no database; it passes the store's conformance
suite (``tests/integration/store``) except what only a database can do: refuse UPDATE and
DELETE by trigger (the memory log has no statement to refuse; the API has neither),
survive ``kill -9``, be shared by several processes, hold projections' tables.

``open_store("memory://name", ...)`` opens the named log of this process: stores opened
with the same name share it (as two connections share a file), and it lives as long as
the process. ``memory://`` alone gives a log of the store's own.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

from hermes_fed.errors import IntegrityError, ProgrammingError

from .backend import AppendTransaction, Backend, LogState, ReadRow, SubjectKey, check_fingerprints
from .port import PlaceholderConflict, PlaceholderRow

READ_CHUNK = 2000
_POSITION, _STREAM_ID, _VERSION, _TYPE, _SUBJECT = 0, 2, 3, 4, 9  # indexes in a ReadRow
_position, _version = itemgetter(_POSITION), itemgetter(_VERSION)


class _TenantRows:
    """One tenant's rows (``READ_COLUMNS``) in position order, and by stream in version order."""

    def __init__(self) -> None:
        self.rows: list[ReadRow] = []
        self.streams: dict[str, list[ReadRow]] = {}


class MemoryLog:
    """The tables of one in-memory database: every tenant's events, the subject keys and
    the key fingerprints.

    Writers hold :attr:`write_lock` from the moment an append reads the log's state to its
    commit (invariant 4). A commit adds each list's rows with one ``extend``, so a reader,
    which takes no lock, sees a batch whole or not at all.
    """

    def __init__(self) -> None:
        self.write_lock = threading.Lock()
        self.tenants: dict[str, _TenantRows] = {}
        self.event_ids: dict[bytes, tuple[str, int, int]] = {}  # id -> (tenant, position, version)
        self.subject_keys: dict[str, dict[str, tuple[str, bytes]]] = {}  # subject -> ref -> wrapped key
        self.fingerprints: dict[str, str] = {}
        # session -> (type, digest) -> number, and session -> (type, number) taken
        self.placeholders: dict[str, dict[tuple[str, bytes], int]] = {}
        self.placeholder_numbers: dict[str, set[tuple[str, int]]] = {}

    def tenant(self, tenant_id: str) -> _TenantRows:
        found = self.tenants.get(tenant_id)
        if found is None:
            found = self.tenants.setdefault(tenant_id, _TenantRows())
        return found

    def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table as the SQL backends lay it out (``events`` rows as ``backend.Row``)."""
        with self.write_lock:
            return {
                "events": [(t, *row) for t, rows in sorted(self.tenants.items()) for row in rows.rows],
                "subject_keys": [
                    (s, ref, *key)
                    for s, refs in sorted(self.subject_keys.items())
                    for ref, key in sorted(refs.items())
                ],
                "key_fingerprints": sorted(self.fingerprints.items()),
                "redaction_placeholders": [
                    (s, t, d, n)
                    for s, numbers in sorted(self.placeholders.items())
                    for (t, d), n in sorted(numbers.items())
                ],
            }

    def load(self, tables: Mapping[str, Sequence[tuple[Any, ...]]]) -> None:
        """Replace every table with ``tables`` (as :meth:`tables` gives them): restoring a
        dump, or what an attacker with this process's memory could do to the rows."""
        with self.write_lock:
            self.tenants, self.event_ids, self.subject_keys = {}, {}, {}
            for tenant_id, *row in sorted(tables["events"], key=itemgetter(0, 1)):
                self._add(tenant_id, [tuple(row)])
            for subject_id, ref, wrap_id, wrapped in tables["subject_keys"]:
                self.subject_keys.setdefault(subject_id, {})[ref] = (wrap_id, bytes(wrapped))
            self.fingerprints = dict(tables["key_fingerprints"])
            self.placeholders, self.placeholder_numbers = {}, {}
            self._add_placeholders([PlaceholderRow(*r) for r in tables.get("redaction_placeholders", ())])

    def placeholder_clash(self, rows: Sequence[PlaceholderRow]) -> bool:
        """Whether a row clashes with a stored one, or with another row of ``rows``
        (the two unique keys of the SQL table)."""
        digests: set[tuple[str, str, bytes]] = set()
        numbers: set[tuple[str, str, int]] = set()
        for s, t, d, n in rows:
            if (t, d) in self.placeholders.get(s, {}) or (t, n) in self.placeholder_numbers.get(s, ()):
                return True
            if (s, t, d) in digests or (s, t, n) in numbers:
                return True
            digests.add((s, t, d))
            numbers.add((s, t, n))
        return False

    def _add_placeholders(self, rows: Sequence[PlaceholderRow]) -> None:
        for s, t, d, n in rows:
            self.placeholders.setdefault(s, {})[(t, bytes(d))] = n
            self.placeholder_numbers.setdefault(s, set()).add((t, n))

    def _add(self, tenant_id: str, rows: Sequence[ReadRow]) -> None:
        """Store one batch's rows (under the write lock)."""
        tenant = self.tenant(tenant_id)
        by_stream: dict[str, list[ReadRow]] = {}
        for row in rows:
            self.event_ids[row[1]] = (tenant_id, row[_POSITION], row[_VERSION])
            by_stream.setdefault(row[_STREAM_ID], []).append(row)
        for stream_id, stream_rows in by_stream.items():
            tenant.streams.setdefault(stream_id, []).extend(stream_rows)
        tenant.rows.extend(rows)


_LOGS: dict[str, MemoryLog] = {}
_LOGS_LOCK = threading.Lock()


def memory_log(name: str = "") -> MemoryLog:
    """The process's memory log called ``name`` (created if new); ``""``: a new private one."""
    if not name:
        return MemoryLog()
    with _LOGS_LOCK:
        return _LOGS.setdefault(name, MemoryLog())


class MemoryTransaction(AppendTransaction):
    """Buffers an append's writes; the commit applies them under the log's write lock."""

    def __init__(self, backend: MemoryBackend) -> None:
        self.backend = backend
        self.log = backend.log
        self.rows: list[tuple[Any, ...]] = []
        self.new_keys: list[SubjectKey] = []
        self.shredded: list[str] = []
        self.placeholders: list[PlaceholderRow] = []
        self.locked = False
        self.done = False

    def subject_keys(self, subject_ids: Sequence[str]) -> list[SubjectKey]:
        return self.backend.subject_keys(subject_ids)

    def lock(self, event_ids: Sequence[bytes], stream_ids: Sequence[str]) -> LogState:
        log, tenant_id = self.log, self.backend.tenant_id
        if not self.locked:
            log.write_lock.acquire()
            self.locked = True
        existing = {}
        for event_id in event_ids:
            found = log.event_ids.get(event_id)
            if found is not None:
                existing[event_id] = found[1:]
        tenant = log.tenant(tenant_id)
        versions = {s: tenant.streams[s][-1][_VERSION] for s in stream_ids if tenant.streams.get(s)}
        head = (tenant.rows[-1][_POSITION], tenant.rows[-1][-1]) if tenant.rows else None
        return LogState(existing, versions, head)

    def insert(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.rows.extend(rows)

    def insert_subject_keys(self, keys: Sequence[SubjectKey]) -> None:
        self.new_keys.extend(keys)

    def delete_subject_keys(self, subject_id: str) -> None:
        self.shredded.append(subject_id)

    def insert_placeholders(self, rows: Sequence[PlaceholderRow]) -> None:
        if self.log.placeholder_clash([*self.placeholders, *rows]):  # checked under the write lock
            raise PlaceholderConflict(
                "placeholder numbers changed under this append; the gate numbers them again"
            )
        self.placeholders.extend(rows)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise ProgrammingError("the memory log runs no SQL: a statement needs a sqlite or postgresql store")

    def commit(self) -> None:
        log, tenant_id = self.log, self.backend.tenant_id
        if not self.locked:
            log.write_lock.acquire()
            self.locked = True
        for row in self.rows:  # the constraints of the events table
            if row[0] != tenant_id or row[2] in log.event_ids:
                raise IntegrityError(
                    f"append failed, nothing written: event id {row[2].hex()} is already stored"
                )
        for key in self.new_keys:
            if key.key_ref in log.subject_keys.get(key.subject_id, {}):
                raise IntegrityError(f"append failed, nothing written: subject key {key.key_ref} exists")
        for key in self.new_keys:
            log.subject_keys.setdefault(key.subject_id, {})[key.key_ref] = (
                key.wrap_key_id,
                bytes(key.wrapped),
            )
        if self.placeholders and log.placeholder_clash(self.placeholders):
            raise PlaceholderConflict(
                "placeholder numbers changed under this append; the gate numbers them again"
            )
        for subject_id in self.shredded:
            log.subject_keys.pop(subject_id, None)
        log._add_placeholders(self.placeholders)
        if self.rows:
            log._add(tenant_id, [row[1:] for row in self.rows])
        self.done = True
        self.release()

    def release(self) -> None:
        if self.locked:
            self.locked = False
            self.log.write_lock.release()


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self, log: MemoryLog, tenant_id: str) -> None:
        self.log = log
        self.tenant_id = tenant_id

    def create(self) -> None:
        self.log.tenant(self.tenant_id)

    def record_fingerprints(self, fingerprints: Mapping[str, str]) -> None:
        with self.log.write_lock:
            self.log.fingerprints.update(check_fingerprints(self.log.fingerprints, fingerprints))

    @contextmanager
    def transaction(self) -> Iterator[AppendTransaction]:
        tx = MemoryTransaction(self)
        try:
            yield tx
        finally:
            tx.release()  # without a commit, the buffered writes are dropped

    def stream_subjects(self, stream_ids: Sequence[str]) -> list[tuple[str, str, int]]:
        streams = self.log.tenant(self.tenant_id).streams
        return [
            (stream_id, row[_SUBJECT], row[_VERSION])
            for stream_id in stream_ids
            for row in streams.get(stream_id, ())
            if row[_SUBJECT] is not None
        ]

    def subject_keys(self, subject_ids: Sequence[str]) -> list[SubjectKey]:
        keys = self.log.subject_keys
        return [SubjectKey(s, ref, *key) for s in subject_ids for ref, key in list(keys.get(s, {}).items())]

    def placeholders(self, session_keys: Sequence[str]) -> list[PlaceholderRow]:
        stored = self.log.placeholders
        return [
            PlaceholderRow(s, t, d, n) for s in session_keys for (t, d), n in list(stored.get(s, {}).items())
        ]

    def subject_key(self, subject_id: str, key_ref: str) -> tuple[str, bytes] | None:
        return self.log.subject_keys.get(subject_id, {}).get(key_ref)

    def read(self, after: int, limit: int | None, types: Collection[str] | None) -> Iterator[list[ReadRow]]:
        rows = self.log.tenant(self.tenant_id).rows
        start = bisect_right(rows, after, key=_position)
        wanted = None if types is None else frozenset(types)
        remaining = limit
        while remaining is None or remaining > 0:
            n = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
            chunk: list[ReadRow] = []
            while len(chunk) < n and start < len(rows):
                page = rows[start : start + n - len(chunk)]
                start += len(page)
                chunk.extend(page if wanted is None else [r for r in page if r[_TYPE] in wanted])
            yield chunk
            if len(chunk) < n:
                return
            if remaining is not None:
                remaining -= len(chunk)

    def read_stream(self, stream_id: str, after_version: int) -> Iterator[list[ReadRow]]:
        rows = self.log.tenant(self.tenant_id).streams.get(stream_id, [])
        yield rows[bisect_right(rows, after_version, key=_version) :]

    def head(self) -> int:
        rows = self.log.tenant(self.tenant_id).rows
        return int(rows[-1][_POSITION]) if rows else 0

    def close(self) -> None:
        """Nothing to release: the log stays for the other stores of its name."""
