"""What the event log asks of a storage backend (SQLite, PostgreSQL, memory), and the row
layout they all keep.

The log (:class:`~hermes_fed.store.event_log.EventLog`) validates, seals and chains every
batch itself (``sealing.py``); a backend only stores rows and answers a few queries. One
backend serves one tenant's log; several may share a database (a file, a schema, a named
memory log), as the rows carry the tenant id.

An append runs in one :class:`AppendTransaction` (one connection): the subject-key lookup,
then, under the log's write lock (``lock``), the rows, the new subject keys and the caller's
own statements, then ``commit``. Leaving the transaction without a commit rolls it all back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

from hermes_fed.errors import KeyringError

from .port import PlaceholderRow


class Row(NamedTuple):
    """One event as stored: the columns of the ``events`` table, in order.

    This is the row layout, written once: the SQL column lists, PostgreSQL's COPY types and
    the memory backend derive from it, and ``tests/unit/store`` checks the DDL against it.
    The append builds rows as plain tuples in this order (``sealing.chain_batch``); a read
    returns them without the leading ``tenant_id`` (:data:`READ_COLUMNS`).
    """

    tenant_id: str
    position: int
    event_id: bytes  # 16 bytes
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    occurred_at: int  # microseconds since the epoch
    recorded_at: int
    key_id: str  # the tenant data key of ``data`` (payload.PLAIN_KEY_ID: in clear)
    subject_id: str | None
    key_ref: str | None  # the subject key sealing ``personal``
    data: bytes  # public fields, canonical JSON, maybe encrypted
    personal: bytes | None  # personal fields, sealed under the subject key
    metadata: bytes  # canonical JSON, in clear
    prev_hash: bytes
    hash: bytes


COLUMNS: tuple[str, ...] = Row._fields
READ_COLUMNS: tuple[str, ...] = COLUMNS[1:]
"""What a read returns per row: the columns after ``tenant_id``."""

ReadRow = tuple[Any, ...]
"""A row of :data:`READ_COLUMNS` (byte columns may come as ``bytes`` or ``memoryview``)."""


class SubjectKey(NamedTuple):
    """A subject's data key, wrapped under a tenant key (a row of ``subject_keys``)."""

    subject_id: str
    key_ref: str
    wrap_key_id: str
    wrapped: bytes


class LogState(NamedTuple):
    """What an append needs to know of the log, read under its write lock."""

    existing: dict[bytes, tuple[int, int]]  # event id already stored -> (position, version)
    versions: dict[str, int]  # stream id -> its current version (absent: a new stream)
    head: tuple[int, bytes] | None  # (position, hash) of the last event; None: empty log


class AppendTransaction(ABC):
    """One append's transaction on one connection (see the module docstring)."""

    placeholder: str = "?"
    """The parameter marker of :meth:`execute` (``?`` on SQLite, ``%s`` on PostgreSQL)."""

    @abstractmethod
    def subject_keys(self, subject_ids: Sequence[str]) -> list[SubjectKey]:
        """The stored keys of these subjects (before the write lock is taken)."""

    @abstractmethod
    def lock(self, event_ids: Sequence[bytes], stream_ids: Sequence[str]) -> LogState:
        """Take the log's write lock (held until the transaction ends) and read its state:
        the given ids already stored, the streams' versions, the head."""

    @abstractmethod
    def insert(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Store rows laid out as :class:`Row`."""

    @abstractmethod
    def insert_subject_keys(self, keys: Sequence[SubjectKey]) -> None: ...

    @abstractmethod
    def delete_subject_keys(self, subject_id: str) -> None:
        """Destroy every key of the subject (crypto-shredding)."""

    @abstractmethod
    def insert_placeholders(self, rows: Sequence[PlaceholderRow]) -> None:
        """Store placeholder rows (under the write lock); raise
        :class:`~hermes_fed.store.port.PlaceholderConflict` if one clashes with a stored row
        (same session, type and digest, or same session, type and number)."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a caller's statement inside this transaction (parameters marked by
        :attr:`placeholder`); its rows, if it returns any. A SQL backend only."""

    @abstractmethod
    def commit(self) -> None: ...


TransactionHook = Callable[[AppendTransaction], object]
"""Runs inside an append's transaction, under the write lock, after the rows are inserted
and before the commit: what it writes commits with the events, or not at all."""


class Backend(ABC):
    """The storage of one tenant's log."""

    name: str
    """``sqlite``, ``postgresql`` or ``memory``."""

    blob: Callable[[bytes], Any] = bytes
    """How byte columns are bound in the rows an append builds (SQLite: ``bytearray``)."""

    @abstractmethod
    def create(self) -> None:
        """Create the tables (and the append-only guards) if they do not exist yet."""

    @abstractmethod
    def record_fingerprints(self, fingerprints: Mapping[str, str]) -> None:
        """Store the fingerprints of the key ring's data keys not stored yet; raise
        :class:`KeyringError` (storing nothing) if a stored one differs."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[AppendTransaction]:
        """A new append transaction; a driver error inside it is raised as ours, after
        the rollback."""

    @abstractmethod
    def stream_subjects(self, stream_ids: Sequence[str]) -> list[tuple[str, str, int]]:
        """``(stream_id, subject_id, stream_version)`` of every event of these streams that
        names a subject."""

    @abstractmethod
    def subject_keys(self, subject_ids: Sequence[str]) -> list[SubjectKey]: ...

    @abstractmethod
    def placeholders(self, session_keys: Sequence[str]) -> list[PlaceholderRow]:
        """The stored placeholder rows of these sessions (committed ones only)."""

    @abstractmethod
    def subject_key(self, subject_id: str, key_ref: str) -> tuple[str, bytes] | None:
        """``(wrap_key_id, wrapped)`` of one subject key, or None if it was destroyed."""

    @abstractmethod
    def read(self, after: int, limit: int | None, types: Collection[str] | None) -> Iterator[list[ReadRow]]:
        """Rows with ``position > after`` in position order, in chunks (``types``: only
        those, non-empty; ``limit`` counts the rows handed out)."""

    @abstractmethod
    def read_stream(self, stream_id: str, after_version: int) -> Iterator[list[ReadRow]]:
        """One stream's rows with ``stream_version > after_version``, in version order."""

    @abstractmethod
    def head(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...


def check_fingerprints(stored: Mapping[str, str], mine: Mapping[str, str]) -> dict[str, str]:
    """The fingerprints of ``mine`` not stored yet; raises if a stored one differs."""
    for key_id, fingerprint in mine.items():
        if key_id in stored and stored[key_id] != fingerprint:
            raise KeyringError(f"key {key_id!r} in the key ring is not the key this log was written with")
    return {k: v for k, v in mine.items() if k not in stored}
