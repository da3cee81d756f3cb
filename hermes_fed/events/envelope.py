"""The event envelope: what is appended (:class:`NewEvent`) and what is read back
(:class:`StoredEvent`). See DESIGN.md §3."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

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


#: Decodes a stored payload on first access: returns ``(data, erased_fields)``.
PayloadLoader = Callable[[], tuple[Mapping[str, Any], tuple[str, ...]]]

_STORED_FIELDS = (
    "position",
    "event_id",
    "tenant_id",
    "stream_id",
    "stream_version",
    "type",
    "schema_version",
    "occurred_at",
    "recorded_at",
    "data",
    "metadata",
    "prev_hash",
    "hash",
    "erased_fields",
)


class StoredEvent:
    """An event as read from the log: decrypted and upcast to the current schema.

    ``erased_fields`` names personal fields whose subject key was destroyed; their values
    are ``None``.

    A store may hand out events whose payload is decoded on first access (``loader``):
    the envelope (position, type, stream, times, hashes) is read eagerly, ``data`` and
    ``erased_fields`` are decrypted and parsed when first asked for, once. A reader that
    routes on the envelope (a projection with no handler for the type, a count by type)
    then never pays for the decryption. Read-only by convention, like a frozen record.
    """

    __slots__ = (
        "_data",
        "_erased",
        "_event_id",
        "_loader",
        "_metadata",
        "_occurred",
        "_recorded",
        "hash",
        "position",
        "prev_hash",
        "schema_version",
        "stream_id",
        "stream_version",
        "tenant_id",
        "type",
    )

    position: int
    tenant_id: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    prev_hash: bytes
    hash: bytes

    def __init__(
        self,
        position: int,
        event_id: uuid.UUID | bytes,
        tenant_id: str,
        stream_id: str,
        stream_version: int,
        type: str,
        schema_version: int,
        occurred_at: datetime | int,
        recorded_at: datetime | int,
        data: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | bytes,
        prev_hash: bytes,
        hash: bytes,
        erased_fields: tuple[str, ...] = (),
        *,
        loader: PayloadLoader | None = None,
    ) -> None:
        if (data is None) == (loader is None):
            raise ValueError("a StoredEvent needs exactly one of data and loader")
        # A store may pass the stored forms (16 id bytes, microseconds since the epoch,
        # canonical JSON metadata): they are converted on first access, which a bulk
        # replay that folds only types and payloads never makes.
        self.position = position
        self._event_id = event_id
        self.tenant_id = tenant_id
        self.stream_id = stream_id
        self.stream_version = stream_version
        self.type = type
        self.schema_version = schema_version
        self._occurred = occurred_at
        self._recorded = recorded_at
        self._metadata = metadata
        self.prev_hash = prev_hash
        self.hash = hash
        self._data = data
        self._erased = erased_fields
        self._loader = loader

    def _load(self) -> Mapping[str, Any]:
        loader = self._loader
        if loader is not None:
            # Errors (a corrupt row, a wrong key) surface here, naming the position, and
            # again on the next access: nothing half-decoded is kept.
            self._data, self._erased = loader()
            self._loader = None
        assert self._data is not None
        return self._data

    @property
    def event_id(self) -> uuid.UUID:
        value = self._event_id
        if type(value) is bytes:
            value = self._event_id = uuid.UUID(bytes=value)
        assert isinstance(value, uuid.UUID)
        return value

    @property
    def occurred_at(self) -> datetime:
        value = self._occurred
        if type(value) is int:
            value = self._occurred = from_micros(value)
        assert isinstance(value, datetime)
        return value

    @property
    def recorded_at(self) -> datetime:
        value = self._recorded
        if type(value) is int:
            value = self._recorded = from_micros(value)
        assert isinstance(value, datetime)
        return value

    @property
    def occurred_at_us(self) -> int:
        """``occurred_at`` in microseconds since the epoch (no datetime is built)."""
        value = self._occurred
        return value if type(value) is int else to_micros(value)  # type: ignore[arg-type]

    @property
    def recorded_at_us(self) -> int:
        """``recorded_at`` in microseconds since the epoch (no datetime is built)."""
        value = self._recorded
        return value if type(value) is int else to_micros(value)  # type: ignore[arg-type]

    @property
    def metadata(self) -> Mapping[str, Any]:
        value = self._metadata
        if type(value) is bytes:
            value = self._metadata = orjson.loads(value)
        assert isinstance(value, Mapping)
        return value

    @property
    def data(self) -> Mapping[str, Any]:
        data = self._data
        return data if data is not None else self._load()

    @property
    def erased_fields(self) -> tuple[str, ...]:
        if self._loader is not None:
            self._load()
        return self._erased

    @property
    def decoded(self) -> bool:
        """Whether the payload has been decoded (always, for an eagerly read event)."""
        return self._loader is None

    @property
    def erased(self) -> bool:
        return bool(self.erased_fields)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _STORED_FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoredEvent):
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # data is a mutable mapping

    def __repr__(self) -> str:
        payload = repr(self._data) if self._loader is None else "<not decoded>"
        return (
            f"StoredEvent(position={self.position}, type={self.type!r}, "
            f"stream_id={self.stream_id!r}, stream_version={self.stream_version}, data={payload})"
        )

    def record(self, catalog: Catalog = DEFAULT_CATALOG) -> EventRecord:
        """The typed record; raises ``SubjectErasedError`` if personal fields were shredded."""
        if self.erased_fields:
            raise SubjectErasedError(
                f"position {self.position}: fields {list(self.erased_fields)} belong to an erased subject"
            )
        schema = catalog.schema(self.type)
        # Limits are checked on append; an event stored before a limit existed still reads.
        record: EventRecord = schema.record(**schema.validate(self.data, check_limits=False))
        return record
