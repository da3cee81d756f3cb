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
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable

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

    def digest(self, session_key: str, entity_type: str, value: str) -> bytes:
        msg = "\x1f".join((session_key, entity_type, normalise(entity_type, value)))
        return hmac.new(self._secret, msg.encode("utf-8"), hashlib.sha256).digest()

    def placeholder(self, session_key: str, entity_type: str, value: str) -> str:
        number = self._index.number_for(
            session_key, entity_type, self.digest(session_key, entity_type, value)
        )
        return f"<{entity_type}_{number}>"
