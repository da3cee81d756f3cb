"""A durable :class:`PlaceholderIndex` in the tenant's log.

The in-memory index restarts its numbering when the process restarts, so the same e-mail
could become ``<EMAIL_ADDRESS_1>`` before a node restart and ``<EMAIL_ADDRESS_2>`` after it
in the same session (placeholder invariant P1 broken across processes). This index keeps
``(session, type, HMAC digest) -> number`` in the log's ``redaction_placeholders`` table:
digests and numbers only (P3).

Numbers are assigned per batch (P4): the gate (:func:`staged_gate`) reads the committed
numbers of the batch's sessions (cached: stored rows never change), numbers new values on
top of them, and hands the new rows to the log, which inserts them in the append's own
transaction, under its write lock, before the events. So an append costs no transaction of
its own for its placeholders, and no event is ever stored with a number the index lacks
(a crash loses both or neither). Two writers that numbered the same session from the same
view collide on the table's unique keys; the loser's append rolls back whole and its gate
numbers the batch again from what is stored (so two processes redacting the same value get
the same placeholder).

A session's extra deny terms are personal, so they are stored sealed under the tenant's
active data key, in a table of their own (rare writes, one transaction each).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag

from hermes_fed.errors import KeyringError
from hermes_fed.events import NewEvent
from hermes_fed.store import EventLog, Keyring
from hermes_fed.store.port import Gate, GatedBatch, PlaceholderConflict, PlaceholderRow
from hermes_fed.store.schema_ddl import redaction_placeholders as placeholders
from hermes_fed.store.sql_backend import SqlBackend
from hermes_fed.store.sqlite import create_tables

from .placeholders import PlaceholderStage, StagedPlaceholderIndex, StagedRow
from .redactor import Redactor

__all__ = ["StorePlaceholderIndex", "placeholders", "staged_gate"]

metadata = sa.MetaData()

deny_terms = sa.Table(
    "redaction_deny_terms",
    metadata,
    sa.Column("session_key", sa.String(200), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
)


_DENY_QUERY = "SELECT session_key, key_id, sealed FROM redaction_deny_terms WHERE session_key IN ({})"


class StorePlaceholderIndex(StagedPlaceholderIndex):
    """Placeholder numbers in the log's database (any backend: SQLite, PostgreSQL, memory)
    and session deny terms sealed beside them (a memory log keeps those in this process)."""

    def __init__(self, store: EventLog, keyring: Keyring) -> None:
        super().__init__()
        self.backend = store.backend
        self.keyring = keyring
        self.engine: sa.Engine | None = self.backend.engine if isinstance(self.backend, SqlBackend) else None
        if self.engine is not None:
            create_tables(metadata, self.engine)
        self._memory_deny: dict[str, tuple[str, ...]] = {}
        self._deny_lock = threading.Lock()

    # --- numbers ---------------------------------------------------------------------------
    def load(self, session_keys: Collection[str]) -> Iterable[StagedRow]:
        return self.backend.placeholders(list(session_keys))

    def write(self, rows: Collection[StagedRow]) -> bool:
        try:
            with self.backend.transaction() as tx:
                tx.lock((), ())  # the log's write lock: the same order as an append
                tx.insert_placeholders([PlaceholderRow(*r) for r in rows])
                tx.commit()
        except PlaceholderConflict:
            return False
        return True

    def stage(self, session_keys: Collection[str]) -> PlaceholderStage:
        """The batch's stage: its sessions' deny terms and the numbers of those not cached,
        read in one transaction (on PostgreSQL two reads of their own cost a BEGIN, a
        COMMIT and a pooled connection more per batch, ~0.3 ms)."""
        backend = self.backend
        if self.engine is None or not isinstance(backend, SqlBackend):
            return super().stage(session_keys)
        keys = list(session_keys)
        missing = self.uncached(keys)
        with backend.mapped("cannot read the placeholder index"):
            raw = self.engine.raw_connection()
            try:
                cur = raw.cursor()
                deny = self._select_deny(backend, cur, keys)
                rows = backend.select_placeholders(cur, missing) if missing else []
                backend.end_read(raw)
            finally:
                raw.close()
        return PlaceholderStage(self, self.cache(keys, missing, rows), deny)

    # --- deny terms ------------------------------------------------------------------------
    def add_deny_terms(self, session_key: str, terms: Iterable[str]) -> None:
        merged = tuple(dict.fromkeys((*self.deny_terms(session_key), *(t for t in terms if t.strip()))))
        if self.engine is None:
            with self._deny_lock:
                self._memory_deny[session_key] = merged
            return
        key_id, sealed = self.keyring.encrypt(orjson.dumps(list(merged)), session_key.encode())
        with self.engine.begin() as conn:
            conn.execute(deny_terms.delete().where(deny_terms.c.session_key == session_key))
            conn.execute(deny_terms.insert().values(session_key=session_key, key_id=key_id, sealed=sealed))

    def deny_terms(self, session_key: str) -> tuple[str, ...]:
        return self.deny_terms_of((session_key,)).get(session_key, ())

    def deny_terms_of(self, session_keys: Collection[str]) -> dict[str, tuple[str, ...]]:
        """One query per 500 sessions (the gate asks once per batch)."""
        if self.engine is None:
            return {s: self._memory_deny[s] for s in session_keys if s in self._memory_deny}
        backend = self.backend
        assert isinstance(backend, SqlBackend)
        # Through the DBAPI cursor, as the log reads: SQLAlchemy's expanding IN cost more
        # than the rest of the batch's index work together.
        with backend.mapped("cannot read the session deny terms"):
            raw = self.engine.raw_connection()
            try:
                terms = self._select_deny(backend, raw.cursor(), list(session_keys))
                backend.end_read(raw)
            finally:
                raw.close()
        return terms

    def _select_deny(self, backend: SqlBackend, cur: Any,
                     session_keys: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """The sealed deny terms of these sessions, opened, through a DBAPI cursor."""
        rows = backend.select_in(cur, _DENY_QUERY, session_keys)
        return {s: self._open(s, key_id, bytes(sealed)) for s, key_id, sealed in rows}

    def _open(self, session_key: str, key_id: str, sealed: bytes) -> tuple[str, ...]:
        try:
            plain = self.keyring.decrypt(key_id, sealed, session_key.encode())
        except InvalidTag:
            raise KeyringError(
                f"deny terms of {session_key} fail authentication under key {key_id!r}: wrong key ring"
            ) from None
        return tuple(str(t) for t in orjson.loads(plain))


def staged_gate(redactor: Redactor, index: StagedPlaceholderIndex,
                on_conflict: Callable[[], None] | None = None) -> Gate:
    """The log's gate: each batch redacted on a stage of ``index``; the new placeholder rows
    go to the log with the events (:class:`GatedBatch`), committed in the same transaction.
    ``on_conflict`` is told of each batch whose numbers collided with another writer's."""

    def gate(events: Sequence[NewEvent]) -> GatedBatch:
        stage = index.stage({e.stream_id for e in events})
        redacted = redactor.redact_new_events(events, index=stage)
        rows = [PlaceholderRow(*r) for r in stage.rows]
        discard = stage.discard
        if on_conflict is not None:
            def discard() -> None:
                on_conflict()
                stage.discard()
        return GatedBatch(redacted, rows, stage.commit, discard)

    return gate
