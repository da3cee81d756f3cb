"""The event envelope, the event catalog, schema versions + upcasters, and the codec.

Importing this package registers every catalog type in :data:`DEFAULT_CATALOG`.
"""

from . import coordinator, erasure, serving, session, training
from .codec import canonical_json, uuid7
from .envelope import NewEvent, StoredEvent, from_micros, new_event, to_micros, utcnow
from .schema import DEFAULT_CATALOG, Catalog, EventRecord, EventSchema, event_type

__all__ = [
    "DEFAULT_CATALOG",
    "Catalog",
    "EventRecord",
    "EventSchema",
    "NewEvent",
    "StoredEvent",
    "canonical_json",
    "coordinator",
    "erasure",
    "event_type",
    "from_micros",
    "new_event",
    "serving",
    "session",
    "to_micros",
    "training",
    "utcnow",
    "uuid7",
]
