"""Consistent, keyed placeholders: the same value is the same ``<EMAIL_ADDRESS_1>`` in every
turn and tool call of a session, and the mapping is never stored in clear.

A value is identified by ``HMAC-SHA256(tenant_secret, session_key || type || normalised
value)`` (RFC 2104). The session-scoped :class:`PlaceholderIndex` maps that digest to a
small number per (session, type). Without the tenant secret the digests cannot be tested
against guessed values, and the session key inside the HMAC makes digests of one session
unlinkable to another's.

Invariants
----------
P1. Same session, same type, same normalised value -> same placeholder.
P2. Different values in a session never share a placeholder (numbers are assigned once).
P3. The index holds digests and numbers only, never values.
P4. A durable index never lets an event be stored with a number it does not hold: numbers
    are assigned per batch on a :class:`PlaceholderStage` and written in the append's own
    transaction (``hermes_fed.store.port.GatedBatch``); a writer that numbered from a stale
    view collides with a unique key and numbers the batch again.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping

from hermes_fed.errors import ConfigError

PLACEHOLDER_RE = re.compile(r"<([A-Z][A-Z_]*?)_(\d+)>")
_SPACES = re.compile(r"\s+")


class PlaceholderIndex(ABC):
    """Port: per-session placeholder numbers keyed by value digests (and session deny terms).

    An SQL-backed implementation needs two tables: ``(session_key, entity_type, digest)
    -> number`` with a unique key and a per-(session, type) counter assigned in the same
    transaction (``INSERT ... ON CONFLICT DO NOTHING`` then ``SELECT``), and
    ``(session_key) -> deny terms`` stored encrypted under the tenant's data key, since the
    terms themselves are personal.
    """

    @abstractmethod
    def number_for(self, session_key: str, entity_type: str, digest: bytes) -> int:
        """Return the 1-based number of ``digest`` in this session and type, assigning the
        next free number the first time the digest is seen (P1, P2)."""

    @abstractmethod
    def add_deny_terms(self, session_key: str, terms: Iterable[str]) -> None:
        """Remember extra deny-list terms for one session (from ``SessionStarted``)."""

    @abstractmethod
    def deny_terms(self, session_key: str) -> tuple[str, ...]:
        """The session's extra deny-list terms (empty when none)."""

    def deny_terms_of(self, session_keys: Collection[str]) -> dict[str, tuple[str, ...]]:
        """The extra deny-list terms of several sessions (those with none left out)."""
        found = {s: self.deny_terms(s) for s in session_keys}
        return {s: terms for s, terms in found.items() if terms}

    def stage(self, session_keys: Collection[str]) -> PlaceholderStage | None:
        """A view for one batch whose new numbers are written later, with the batch's events
        (P4); None: this index writes as it numbers."""
        return None


StagedRow = tuple[str, str, bytes, int]
"""(session key, entity type, digest, number): a number a stage assigned."""


class SessionNumbers:
    """The committed numbers of one session: ``(type, digest) -> number`` and the top
    number per type. Only grows (stored rows are never changed)."""

    __slots__ = ("numbers", "top")

    def __init__(self, rows: Iterable[tuple[str, bytes, int]] = ()) -> None:
        self.numbers: dict[tuple[str, bytes], int] = {}
        self.top: dict[str, int] = {}
        for entity_type, digest, number in rows:
            self.add(entity_type, digest, number)

    def add(self, entity_type: str, digest: bytes, number: int) -> None:
        self.numbers[(entity_type, digest)] = number
        if number > self.top.get(entity_type, 0):
            self.top[entity_type] = number


class StagedPlaceholderIndex(PlaceholderIndex):
    """A durable index that numbers per batch (P4): committed numbers are read once per
    session and cached (they never change), new ones are staged and written by the caller.

    Subclasses read stored rows (:meth:`load`) and write rows outside an append
    (:meth:`write`, for a lone :meth:`number_for`).
    """

    _CACHE_SESSIONS = 50_000

    def __init__(self) -> None:
        self._sessions: dict[str, SessionNumbers] = {}
        self._cache_lock = threading.Lock()

    @abstractmethod
    def load(self, session_keys: Collection[str]) -> Iterable[StagedRow]:
        """The stored rows of these sessions."""

    @abstractmethod
    def write(self, rows: Collection[StagedRow]) -> bool:
        """Store rows in a transaction of their own; False if one clashes (nothing written)."""

    def committed(self, session_keys: Collection[str]) -> dict[str, SessionNumbers]:
        """The committed numbers of these sessions (one read for those not cached)."""
        missing = self.uncached(session_keys)
        return self.cache(session_keys, missing, self.load(missing) if missing else ())

    def uncached(self, session_keys: Collection[str]) -> list[str]:
        """Those of these sessions whose numbers are not cached."""
        sessions = self._sessions
        return [s for s in session_keys if s not in sessions]

    def cache(self, session_keys: Collection[str], missing: Collection[str],
              rows: Iterable[StagedRow]) -> dict[str, SessionNumbers]:
        """:meth:`committed`, given the stored ``rows`` of the ``missing`` sessions (read
        by the caller, with whatever else it reads)."""
        sessions = self._sessions
        out = {s: sessions[s] for s in session_keys if s in sessions and s not in missing}
        if missing:
            loaded = {s: SessionNumbers() for s in missing}
            for session_key, entity_type, digest, number in rows:
                if session_key in loaded:
                    loaded[session_key].add(entity_type, digest, number)
            with self._cache_lock:
                if len(sessions) + len(loaded) > self._CACHE_SESSIONS:
                    sessions.clear()  # a daemon sees endless sessions; reloading is one query
                for s, numbers in loaded.items():
                    out[s] = sessions.setdefault(s, numbers)
        late = [s for s in session_keys if s not in out]  # dropped from the cache meanwhile
        if late:
            out.update(self.committed(late))
        return out

    def remember(self, rows: Iterable[StagedRow]) -> None:
        """Rows now committed (by the append that carried them)."""
        with self._cache_lock:
            for session_key, entity_type, digest, number in rows:
                numbers = self._sessions.get(session_key)
                if numbers is not None:
                    numbers.add(entity_type, digest, number)

    def forget(self, session_keys: Iterable[str]) -> None:
        """Drop cached sessions (another writer numbered in them): read them again."""
        with self._cache_lock:
            for s in session_keys:
                self._sessions.pop(s, None)

    def stage(self, session_keys: Collection[str]) -> PlaceholderStage:
        return PlaceholderStage(self, self.committed(session_keys), self.deny_terms_of(session_keys))

    def number_for(self, session_key: str, entity_type: str, digest: bytes) -> int:
        for _ in range(20):
            stage = self.stage((session_key,))
            number = stage.number_for(session_key, entity_type, digest)
            if not stage.rows:
                return number
            if self.write(stage.rows):
                stage.commit()
                return number
            stage.discard()  # another writer took the number or the digest first
        raise RuntimeError(f"placeholder numbering of {session_key} kept colliding with other writers")


class PlaceholderStage(PlaceholderIndex):
    """One batch's numbering on a :class:`StagedPlaceholderIndex`: committed numbers as
    cached, new ones on top of them, kept in :attr:`rows` for the append's transaction.
    Used by one thread (one batch) at a time."""

    def __init__(
        self,
        parent: StagedPlaceholderIndex,
        committed: Mapping[str, SessionNumbers],
        deny: Mapping[str, tuple[str, ...]],
    ) -> None:
        self.parent = parent
        self.sessions = dict(committed)
        self._deny = dict(deny)  # read once per batch: another process may have added some
        self.rows: list[StagedRow] = []
        self._new: dict[tuple[str, str, bytes], int] = {}
        self._top: dict[tuple[str, str], int] = {}

    def number_for(self, session_key: str, entity_type: str, digest: bytes) -> int:
        key = (session_key, entity_type, digest)
        number = self._new.get(key)
        if number is not None:
            return number
        session = self.sessions.get(session_key)
        if session is None:
            session = self.sessions[session_key] = self.parent.committed((session_key,))[session_key]
        number = session.numbers.get((entity_type, digest))
        if number is not None:
            return number
        number = max(session.top.get(entity_type, 0), self._top.get((session_key, entity_type), 0)) + 1
        self._top[(session_key, entity_type)] = number
        self._new[key] = number
        self.rows.append((session_key, entity_type, digest, number))
        return number

    def add_deny_terms(self, session_key: str, terms: Iterable[str]) -> None:
        self.parent.add_deny_terms(session_key, terms)
        self._deny[session_key] = self.parent.deny_terms(session_key)

    def deny_terms(self, session_key: str) -> tuple[str, ...]:
        if session_key not in self.sessions:  # a session the batch was not staged for
            return self.parent.deny_terms(session_key)
        return self._deny.get(session_key, ())

    def commit(self) -> None:
        """The rows were committed with the batch."""
        self.parent.remember(self.rows)

    def discard(self) -> None:
        """The rows clashed with stored ones: the batch's sessions are read again."""
        self.parent.forget(self.sessions)


class InMemoryPlaceholderIndex(PlaceholderIndex):
    """Process-local index (tests, the CLI, a single-process node). Thread-safe."""

    def __init__(self) -> None:
        self._numbers: dict[tuple[str, str, bytes], int] = {}
        self._next: dict[tuple[str, str], int] = {}
        self._deny: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def number_for(self, session_key: str, entity_type: str, digest: bytes) -> int:
        key = (session_key, entity_type, digest)
        with self._lock:
            number = self._numbers.get(key)
            if number is None:
                number = self._next.get((session_key, entity_type), 0) + 1
                self._next[(session_key, entity_type)] = number
                self._numbers[key] = number
            return number

    def add_deny_terms(self, session_key: str, terms: Iterable[str]) -> None:
        with self._lock:
            merged = dict.fromkeys((*self._deny.get(session_key, ()), *terms))
            self._deny[session_key] = tuple(t for t in merged if t.strip())

    def deny_terms(self, session_key: str) -> tuple[str, ...]:
        with self._lock:
            return self._deny.get(session_key, ())


def normalise(entity_type: str, value: str) -> str:
    """Canonical form so trivially different spellings share a placeholder."""
    value = value.strip()
    if entity_type == "PHONE_NUMBER":
        return ("+" if value.startswith("+") else "") + "".join(c for c in value if c.isdigit())
    if entity_type in {"CREDIT_CARD", "US_SSN", "IBAN_CODE"}:
        return "".join(c for c in value if c.isalnum()).upper()
    if entity_type in {"EMAIL_ADDRESS", "DENY_LIST", "MAC_ADDRESS", "IP_ADDRESS"}:
        return _SPACES.sub(" ", value).lower()
    if entity_type in {"PERSON", "LOCATION", "ORGANIZATION", "STREET_ADDRESS"}:
        return _SPACES.sub(" ", value)
    return value


class PlaceholderMinter:
    """Turns (session, type, value) into ``<TYPE_n>`` through the HMAC and the index."""

    __slots__ = ("_index", "_secret")

    def __init__(self, tenant_secret: bytes, index: PlaceholderIndex) -> None:
        if not isinstance(tenant_secret, bytes | bytearray) or len(tenant_secret) < 16:
            raise ConfigError("tenant_secret must be at least 16 bytes of key material, got "
                              f"{type(tenant_secret).__name__} of length "
                              f"{len(tenant_secret) if hasattr(tenant_secret, '__len__') else '?'}")
        self._secret = bytes(tenant_secret)
        self._index = index

    @property
    def index(self) -> PlaceholderIndex:
        return self._index

    def on(self, index: PlaceholderIndex) -> PlaceholderMinter:
        """This minter (same secret) numbering on another index (a batch's stage)."""
        return PlaceholderMinter(self._secret, index)

    def digest(self, session_key: str, entity_type: str, value: str) -> bytes:
        msg = "\x1f".join((session_key, entity_type, normalise(entity_type, value)))
        # hmac.new, not the one-shot hmac.digest: that releases the GIL around its
        # microsecond of work, and with another thread holding it (the gateway's event
        # loop under load) waits the switch interval, 5 ms, to get it back
        return hmac.new(self._secret, msg.encode("utf-8"), hashlib.sha256).digest()

    def placeholder(self, session_key: str, entity_type: str, value: str) -> str:
        number = self._index.number_for(
            session_key, entity_type, self.digest(session_key, entity_type, value)
        )
        return f"<{entity_type}_{number}>"
