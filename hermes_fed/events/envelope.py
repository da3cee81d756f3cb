"""The event envelope: what is appended (:class:`NewEvent`) and what is read back
(:class:`StoredEvent`). See DESIGN.md §3."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hermes_fed.errors import SubjectErasedError

from .codec import uuid7
from .schema import DEFAULT_CATALOG, Catalog, EventRecord


def utcnow() -> datetime:
    return datetime.now(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    # Integer arithmetic: timestamp() * 1e6 goes through a float and can be 1 µs off.
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    return (moment - _EPOCH) // _MICRO


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append.

    ``event_id`` is the idempotency key (client-supplied; time-ordered by default).
    ``subject`` is the ``user_ref`` whose per-subject key encrypts the type's personal
    fields; erasing the subject destroys that key (crypto-shredding).
    """

    stream_id: str
    type: str
    data: Mapping[str, Any]
    event_id: uuid.UUID = field(default_factory=uuid7)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    occurred_at: datetime = field(default_factory=utcnow)
    subject: str | None = None


def new_event(
    record: EventRecord,
    *,
    stream_id: str,
    subject: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> NewEvent:
    """Build a :class:`NewEvent` from a typed record."""
    return NewEvent(
        stream_id=stream_id,
        type=record.TYPE,
        data=record.to_data(),
        event_id=event_id or uuid7(),
        metadata=dict(metadata or {}),
        occurred_at=occurred_at or utcnow(),
        subject=subject,
    )


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read from the log: decrypted and upcast to the current schema.

    ``erased_fields`` names personal fields whose subject key was destroyed; their values
    are ``None``.
    """

    position: int
    event_id: uuid.UUID
    tenant_id: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    occurred_at: datetime
    recorded_at: datetime
    data: Mapping[str, Any]
    metadata: Mapping[str, Any]
    prev_hash: bytes
    hash: bytes
    erased_fields: tuple[str, ...] = ()

    @property
    def erased(self) -> bool:
        return bool(self.erased_fields)

    def record(self, catalog: Catalog = DEFAULT_CATALOG) -> EventRecord:
        """The typed record; raises ``SubjectErasedError`` if personal fields were shredded."""
        if self.erased_fields:
            raise SubjectErasedError(
                f"position {self.position}: fields {list(self.erased_fields)} belong to an erased subject"
            )
        schema = catalog.schema(self.type)
        record: EventRecord = schema.record(**schema.validate(self.data))
        return record
