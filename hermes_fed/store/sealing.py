"""Validate, encode, seal and chain a batch of events into rows (DESIGN.md §3), for any
backend.

The three steps run per batch, each as one loop over it: a per-event helper call and a
keyword-built record per event had cost a sixth of the append.

1. :func:`encode_batch` (before any lock): every event validated against its schema, its
   personal fields split off when it has a subject, both parts as canonical JSON. Every
   event of the batch is validated before any subject key is made, so a bad batch writes
   nothing.
2. :func:`seal_batch`: the public part under the tenant's data key, the personal part under
   the subject's key (AES-GCM; ``payload.py``, ``keyring.py``).
3. :func:`chain_batch` (under the log's write lock): stream versions, positions and the hash
   chain (``chain.py``), into rows laid out as :class:`~hermes_fed.store.backend.Row`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from hermes_fed.errors import ConcurrencyError, KeyringError, SchemaError
from hermes_fed.events import Catalog, NewEvent, to_micros
from hermes_fed.events.codec import canonical_json, json_problem
from hermes_fed.events.schema import EventSchema

from . import chain, payload
from .backend import LogState, SubjectKey
from .keyring import Keyring
from .port import AppendResult

# Canonical JSON (sorted keys) that refuses datetimes and dataclasses instead of turning
# them into strings/objects; what it still converts silently (UUIDs, enums, NaN -> null)
# fails the decode-and-compare check in ``_checked_json``.
_ENCODE = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

Encoded = tuple[str | None, bytes, bytes | None]
"""(subject id, canonical JSON of the public part, of the personal part or None when there
is nothing to seal)."""


class Sealed(NamedTuple):
    """An event encoded for storage; only the position-dependent fields are left to fill."""

    event: NewEvent
    event_id: bytes
    schema_version: int
    occurred_at: int
    key_id: str
    subject_id: str | None
    key_ref: str | None
    data: bytes
    personal: bytes | None
    metadata: bytes


def check_envelope(catalog: Catalog, event: NewEvent) -> EventSchema:
    """The schema of ``event``'s type, after checking its stream id and metadata."""
    if not isinstance(event.stream_id, str) or not 0 < len(event.stream_id) <= 200:
        raise SchemaError(event.type, "<stream_id>", "must be a string of 1..200 characters")
    schema = catalog.schema(event.type)
    problem = json_problem(event.metadata)
    if problem:
        raise SchemaError(event.type, "<metadata>", problem)
    return schema


def _checked_json(event: NewEvent, schema: EventSchema, part: dict[str, Any]) -> bytes:
    """Canonical JSON of ``part``, which must decode to exactly ``part`` again."""
    try:
        raw: bytes | None = orjson.dumps(part, option=_ENCODE)
    except TypeError:
        raw = None
    if raw is None or orjson.loads(raw) != part:
        schema.validate(event.data)  # raises the SchemaError naming the field
        if raw is None:
            raise SchemaError(event.type, "<data>", "not JSON-serialisable")
    return raw


def encode_batch(
    events: Sequence[NewEvent],
    schemas: Sequence[EventSchema],
    keyring: Keyring | None,
    stream_subjects: dict[str, str | None],
) -> list[Encoded]:
    """Validate and encode each event (see :data:`Encoded`).

    ``stream_subjects`` maps a stream to the subject of its first event that named one;
    the personal fields of an event without a subject follow it (possibly an earlier event
    of this very batch: the map is updated as the batch names subjects).

    The nested values are checked by encoding them and comparing the decoded bytes with the
    input (two C calls, a third of a Python walk over the values): anything JSON would not
    give back unchanged fails that check, and only then does the full validation walk run,
    to name the field and the value's type in the error.
    """
    out: list[Encoded] = []
    for event, schema in zip(events, schemas, strict=True):
        data = schema.validate(event.data, deep=False)
        subject_id: str | None = None
        if event.subject is not None:
            if keyring is None:
                raise KeyringError("events with a subject need a key ring (per-subject keys)")
            subject_id = keyring.subject_id(event.subject)
            stream_subjects.setdefault(event.stream_id, subject_id)
        elif schema.personal:
            subject_id = stream_subjects.get(event.stream_id)
        if subject_id is not None and schema.personal:
            public, personal = payload.split_personal(data, schema.personal)
        else:
            public, personal = data, {}
        public_json = _checked_json(event, schema, public)
        out.append((subject_id, public_json, _checked_json(event, schema, personal) if personal else None))
    return out


def subject_keys_for(
    keyring: Keyring | None, wanted: set[str], stored: Sequence[SubjectKey]
) -> tuple[dict[str, tuple[bytes, str]], list[SubjectKey]]:
    """The (key, ref) of each wanted subject (its lowest stored ref, or a new key), and the
    new keys, wrapped, for the caller to store in its append transaction."""
    out: dict[str, tuple[bytes, str]] = {}
    if not wanted:
        return out, []
    assert keyring is not None  # encode_batch refuses subjects without a key ring
    for subject_id, ref, wrap_id, wrapped in sorted(stored):
        if subject_id not in out:
            out[subject_id] = (keyring.unwrap(wrap_id, bytes(wrapped), subject_id), ref)
    made: list[SubjectKey] = []
    for subject_id in sorted(wanted):
        if subject_id not in out:
            key, ref = payload.new_subject_key()
            wrap_id, wrapped = keyring.wrap(key, subject_id)
            made.append(SubjectKey(subject_id, ref, wrap_id, wrapped))
            out[subject_id] = (key, ref)
    return out, made


def seal_batch(
    events: Sequence[NewEvent],
    schemas: Sequence[EventSchema],
    encoded: Sequence[Encoded],
    keyring: Keyring | None,
    subject_keys: Mapping[str, tuple[bytes, str]],
) -> list[Sealed]:
    """Encrypt the encoded events: the public part under the tenant key, the personal part
    under the subject key (records built positionally: keywords cost a tenth of a seal)."""
    out: list[Sealed] = []
    for event, schema, (subject_id, public_json, personal_json) in zip(events, schemas, encoded, strict=True):
        event_id = event.event_id.bytes
        key_ref = personal = None
        if personal_json is not None:
            assert subject_id is not None
            key, key_ref = subject_keys[subject_id]
            personal = payload.seal_personal(personal_json, event_id, key)
        key_id, blob = payload.encrypt_data(keyring, public_json, event_id)
        metadata = event.metadata
        out.append(
            Sealed(
                event,
                event_id,
                schema.version,
                to_micros(event.occurred_at),
                key_id,
                subject_id,
                key_ref,
                blob,
                personal,
                orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS)
                if type(metadata) is dict
                else canonical_json(dict(metadata)),
            )
        )
    return out


def chain_batch(
    tenant_id: str,
    sealed: Sequence[Sealed],
    state: LogState,
    expected: Mapping[str, int],
    blob: Callable[[bytes], Any] = bytes,
) -> tuple[list[tuple[Any, ...]], dict[bytes, AppendResult]]:
    """The rows of the events not stored yet, chained after the log's head, and the result
    of every event of the batch by id (duplicates: their original position).

    Raises :class:`ConcurrencyError` if a stream the batch writes is not at the version
    ``expected`` names. ``blob`` binds the byte columns as the backend wants them.
    """
    existing, versions = state.existing, state.versions
    fresh = [s for s in sealed if s.event_id not in existing]
    streams = dict.fromkeys(s.event.stream_id for s in fresh)
    for stream_id, want in expected.items():
        if stream_id in streams and versions.get(stream_id, 0) != want:
            raise ConcurrencyError(stream_id, versions.get(stream_id, 0), want)
    position, prev = (state.head[0], bytes(state.head[1])) if state.head else (0, chain.GENESIS)
    recorded_at = time.time_ns() // 1000
    rows: list[tuple[Any, ...]] = []
    results: dict[bytes, AppendResult] = {}
    for s in fresh:
        if s.event_id in results:  # the same id twice in one batch
            continue
        position += 1
        stream_id = s.event.stream_id
        version = versions.get(stream_id, 0) + 1
        versions[stream_id] = version
        row = (  # the layout of backend.Row, up to the hash
            tenant_id,
            position,
            blob(s.event_id),
            stream_id,
            version,
            s.event.type,
            s.schema_version,
            s.occurred_at,
            recorded_at,
            s.key_id,
            s.subject_id,
            s.key_ref,
            blob(s.data),
            None if s.personal is None else blob(s.personal),
            blob(s.metadata),
            blob(prev),
        )
        # chain.row_digest(row), its call frame saved: the payloads hashed as sealed
        digest = chain.link(prev, chain.envelope_bytes(row), s.data, s.personal, s.metadata)
        rows.append((*row, blob(digest)))
        prev = digest
        results[s.event_id] = AppendResult(s.event.event_id, position, version, False)
    for event_id, (pos, ver) in existing.items():
        results[event_id] = AppendResult(uuid.UUID(bytes=event_id), pos, ver, True)
    return rows, results
