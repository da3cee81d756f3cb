"""A durable :class:`PlaceholderIndex` in the tenant's database.

The in-memory index restarts its numbering when the process restarts, so the same e-mail
could become ``<EMAIL_ADDRESS_1>`` before a node restart and ``<EMAIL_ADDRESS_2>`` after it
in the same session (placeholder invariant P1 broken across processes). This index keeps
``(session, type, HMAC digest) -> number`` in a table beside the log: digests and numbers
only (P3); a session's extra deny terms are personal, so they are stored sealed under the
tenant's active data key.

A number is assigned by one ``INSERT ... SELECT MAX(number) + 1 ... ON CONFLICT DO NOTHING``
statement: on SQLite it takes the write lock as its first statement (no read-to-write
upgrade, which WAL answers with SQLITE_BUSY_SNAPSHOT), and on PostgreSQL two writers that
compute the same number collide on the unique key and the loser retries.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import orjson
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag

from hermes_fed.errors import KeyringError
from hermes_fed.store import Keyring

from .placeholders import PlaceholderIndex

metadata = sa.MetaData()

placeholders = sa.Table(
    "redaction_placeholders",
    metadata,
    sa.Column("session_key", sa.String(200), nullable=False),
    sa.Column("entity_type", sa.String(64), nullable=False),
    sa.Column("digest", sa.LargeBinary(32), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("session_key", "entity_type", "digest", name="redaction_placeholders_pk"),
    sa.UniqueConstraint("session_key", "entity_type", "number", name="redaction_placeholders_number_uq"),
)

deny_terms = sa.Table(
    "redaction_deny_terms",
    metadata,
    sa.Column("session_key", sa.String(200), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
)

_ASSIGN = sa.text(
    "INSERT INTO redaction_placeholders (session_key, entity_type, digest, number) "
    "SELECT CAST(:s AS VARCHAR(200)), CAST(:e AS VARCHAR(64)), :d, COALESCE(MAX(number), 0) + 1 "
    "FROM redaction_placeholders "
    "WHERE session_key = :s AND entity_type = :e "
    "ON CONFLICT (session_key, entity_type, digest) DO NOTHING"
)
_CACHE_LIMIT = 100_000


class SqlPlaceholderIndex(PlaceholderIndex):
    """Placeholder numbers and session deny terms kept in the tenant's database."""

    def __init__(self, engine: sa.Engine, keyring: Keyring) -> None:
        self.engine = engine
        self.keyring = keyring
        metadata.create_all(engine)
        self._cache: dict[tuple[str, str, bytes], int] = {}
        self._lock = threading.Lock()

    def number_for(self, session_key: str, entity_type: str, digest: bytes) -> int:
        key = (session_key, entity_type, digest)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        params = {"s": session_key, "e": entity_type, "d": digest}
        for attempt in range(20):
            try:
                with self.engine.begin() as conn:
                    conn.execute(_ASSIGN, params)
                    number = conn.execute(
                        sa.select(placeholders.c.number).where(
                            placeholders.c.session_key == session_key,
                            placeholders.c.entity_type == entity_type,
                            placeholders.c.digest == digest,
                        )
                    ).scalar_one()
                break
            except sa.exc.IntegrityError:
                # Another writer took the same next number first; the retry sees it.
                if attempt == 19:
                    raise
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = int(number)
        return int(number)

    def add_deny_terms(self, session_key: str, terms: Iterable[str]) -> None:
        merged = dict.fromkeys((*self.deny_terms(session_key), *(t for t in terms if t.strip())))
        key_id, sealed = self.keyring.encrypt(orjson.dumps(list(merged)), session_key.encode())
        with self.engine.begin() as conn:
            conn.execute(deny_terms.delete().where(deny_terms.c.session_key == session_key))
            conn.execute(deny_terms.insert().values(session_key=session_key, key_id=key_id, sealed=sealed))

    def deny_terms(self, session_key: str) -> tuple[str, ...]:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(deny_terms.c.key_id, deny_terms.c.sealed).where(
                    deny_terms.c.session_key == session_key
                )
            ).first()
        if row is None:
            return ()
        try:
            plain = self.keyring.decrypt(row[0], bytes(row[1]), session_key.encode())
        except InvalidTag:
            raise KeyringError(
                f"deny terms of {session_key} fail authentication under key {row[0]!r}: wrong key ring"
            ) from None
        terms = orjson.loads(plain)
        return tuple(str(t) for t in terms)
