"""The ``EventStore`` port and its records."""

from __future__ import annotations

import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from hermes_fed.errors import HermesFedError
from hermes_fed.events import NewEvent, StoredEvent


class PlaceholderRow(NamedTuple):
    """A row of the placeholder index (``redaction_placeholders``): the number of one value
    digest in one session and entity type (digests and numbers only, never values)."""

    session_key: str
    entity_type: str
    digest: bytes
    number: int


class PlaceholderConflict(HermesFedError):
    """A placeholder row clashes with a stored one (another writer numbered the same value,
    or took the same number, first). The append is rolled back whole; the log runs the gate
    again on fresh numbers."""


@dataclass(frozen=True, slots=True)
class GatedBatch:
    """What a gate hands the log: the events to append and the placeholder rows their text
    relies on, written in the append's own transaction (all or nothing with the events).

    ``committed`` runs after the commit (the gate may now trust its rows); ``conflicted``
    after a :class:`PlaceholderConflict` rolled the append back, before the gate runs again.
    """

    events: Sequence[NewEvent]
    placeholders: Sequence[PlaceholderRow] = ()
    committed: Callable[[], None] | None = None
    conflicted: Callable[[], None] | None = None


Gate = Callable[[Sequence[NewEvent]], "Sequence[NewEvent] | GatedBatch"]
"""Runs on every batch before it is appended (the redaction gate of DESIGN.md §4); it may
return a :class:`GatedBatch` whose placeholder rows commit with the events."""


@dataclass(frozen=True, slots=True)
class AppendResult:
    event_id: uuid.UUID
    position: int
    stream_version: int
    duplicate: bool  # True: the event_id was already in the log; nothing was written


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    checked: int
    head: int
    first_bad_position: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.checked} events, chain intact up to position {self.head}"
        return f"BROKEN at position {self.first_bad_position}: {self.reason}"


class EventStore(ABC):
    """An append-only, hash-chained, per-tenant event log (DESIGN.md §3).

    Invariants: 1 append-only, 2 tamper-evident, 3 idempotent + optimistic,
    4 commit order, 6 acknowledged = durable.
    """

    tenant_id: str

    @abstractmethod
    def append(
        self,
        events: Sequence[NewEvent],
        expected_versions: Mapping[str, int] | None = None,
    ) -> list[AppendResult]:
        """Append ``events`` in one transaction, all or nothing.

        ``expected_versions`` maps a stream id to the version the caller last saw (0 for a
        new stream); a mismatch raises ``ConcurrencyError`` and writes nothing. An event
        whose id is already in the log is a no-op returning its original position.
        """

    @abstractmethod
    def read(
        self,
        after: int = 0,
        limit: int | None = None,
        *,
        types: Collection[str] | None = None,
        lazy: bool = False,
    ) -> Iterator[StoredEvent]:
        """Events with ``position > after`` in position (= commit) order.

        ``types``: only events of these types (``limit`` counts those). ``lazy``: hand out
        events whose payload (``data``, ``erased_fields``) is decrypted on first access, so
        a reader that looks only at the envelope never pays for it; a corrupt or
        undecryptable payload then raises at that access instead of during iteration.
        """

    @abstractmethod
    def read_stream(self, stream_id: str, after_version: int = 0) -> list[StoredEvent]:
        """One stream's events in version order."""

    @abstractmethod
    def head(self) -> int:
        """The highest position (0 for an empty log)."""

    @abstractmethod
    def verify(self) -> VerifyReport:
        """Recompute the hash chain; name the first bad position."""

    @abstractmethod
    def erase_subject(self, user_ref: str, reason: str = "") -> int:
        """Append ``SubjectErased`` and destroy the subject's key; returns its position."""

    @abstractmethod
    def close(self) -> None: ...

    def subscribe(
        self,
        after: int = 0,
        *,
        stop: threading.Event | None = None,
        poll_interval: float = 0.05,
        batch_size: int = 1000,
    ) -> Iterator[StoredEvent]:
        """Catch-up subscription: every event after ``after``, then new ones as they commit.

        Ends when ``stop`` is set. Positions are assigned in commit order (invariant 4), so
        reading ``position > checkpoint`` never skips an event.
        """
        stop = stop or threading.Event()
        checkpoint = after
        while not stop.is_set():
            got = 0
            for event in self.read(after=checkpoint, limit=batch_size):
                checkpoint = event.position
                got += 1
                yield event
            if got < batch_size:
                stop.wait(poll_interval)

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
