"""Stored rows back to :class:`StoredEvent`: decrypt, open the personal part, upcast.

Subject keys are cached for one read only (:meth:`RowDecoder.forget`): another process may
erase a subject (delete its key) at any time, and a long-lived reader must then stop
decrypting it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from hermes_fed.errors import CorruptEventError
from hermes_fed.events import Catalog, StoredEvent

from . import payload
from .backend import ReadRow, SubjectKey
from .keyring import NONCE, Keyring, key_cipher

# indexes in a ReadRow (backend.READ_COLUMNS)
_SUBJECT, _PERSONAL = 9, 12


class RowDecoder:
    """Decodes one tenant's rows; holds the subject keys of the read in progress."""

    def __init__(
        self,
        tenant_id: str,
        keyring: Keyring | None,
        catalog: Catalog,
        fetch_keys: Callable[[Sequence[str]], list[SubjectKey]],
        fetch_key: Callable[[str, str], tuple[str, bytes] | None],
    ) -> None:
        self.tenant_id = tenant_id
        self.keyring = keyring
        self.catalog = catalog
        self._fetch_keys = fetch_keys
        self._fetch_key = fetch_key
        self._keys: dict[tuple[str, str], bytes | None] = {}  # None: the subject was erased
        self._prefetched: set[str] = set()

    # --- subject keys ---------------------------------------------------------------------
    def forget(self) -> None:
        """Drop the cached subject keys (at the start of every read)."""
        self._keys = {}
        self._prefetched = set()

    def remember(self, subject_id: str, key_ref: str, key: bytes) -> None:
        self._keys[(subject_id, key_ref)] = key

    def erased(self, subject_id: str) -> None:
        """The subject's keys were destroyed: its cached keys read as erased from now on."""
        for cached in [k for k in self._keys if k[0] == subject_id]:
            self._keys[cached] = None

    def prefetch(self, rows: Sequence[ReadRow]) -> None:
        """Load the keys of every subject in ``rows`` with one query (a query per subject
        and read made up a third of a projection rebuild). A miss still falls back to
        :meth:`subject_key`'s own query, so a key made later is found too."""
        if self.keyring is None:
            return
        wanted = sorted({r[_SUBJECT] for r in rows if r[_PERSONAL] is not None} - self._prefetched)
        if not wanted:
            return
        for subject_id, ref, wrap_id, wrapped in self._fetch_keys(wanted):
            self._keys[(subject_id, ref)] = self.keyring.unwrap(wrap_id, bytes(wrapped), subject_id)
        self._prefetched.update(wanted)

    def subject_key(self, subject_id: str, ref: str) -> bytes | None:
        cached = self._keys.get((subject_id, ref), b"")
        if cached != b"":
            return cached
        if self.keyring is None:
            return None
        found = self._fetch_key(subject_id, ref)
        key = None if found is None else self.keyring.unwrap(found[0], bytes(found[1]), subject_id)
        self._keys[(subject_id, ref)] = key
        return key

    # --- rows -----------------------------------------------------------------------------
    def decode(self, row: ReadRow, lazy: bool = False) -> StoredEvent:
        """The event of a row; ``lazy``: its payload decoded on first access."""
        (position, eid, stream_id, version, etype, schema_version, occurred_at, recorded_at,
         key_id, subject_id, key_ref, blob, personal, meta, prev_hash, digest) = row  # fmt: skip
        event_id = bytes(eid)
        fields = (position, event_id, etype, schema_version, key_id, blob, subject_id, key_ref, personal)
        data: dict[str, Any] | None
        erased: tuple[str, ...]
        if lazy:
            data, erased, loader = None, (), functools.partial(self.payload, *fields)
        else:
            (data, erased), loader = self.payload(*fields), None
        return StoredEvent(
            position, event_id, self.tenant_id, stream_id, version, etype, schema_version,
            occurred_at, recorded_at, data, bytes(meta), bytes(prev_hash), bytes(digest), erased,
            loader=loader,
        )  # fmt: skip

    def decode_eager(self, row: ReadRow, lazy: bool = False) -> StoredEvent:
        """:meth:`decode` of an encrypted row, in one frame for the common case (current
        schema version, tenant key in the ring, subject key cached by the read's prefetch):
        a replay decodes every event, and the general path's six nested calls per event
        cost a quarter of it. Anything else (an unknown key, an erased subject, an old
        schema version, a row that fails authentication) goes the general way, which
        raises the named errors."""
        (position, eid, stream_id, version, etype, schema_version, occurred_at, recorded_at,
         key_id, subject_id, key_ref, blob, personal, meta, prev_hash, digest) = row  # fmt: skip
        assert self.keyring is not None
        try:
            event_id = bytes(eid)
            data = orjson.loads(self.keyring.cipher(key_id).decrypt(blob[:NONCE], blob[NONCE:], event_id))
            if personal is not None:
                key = self._keys[(subject_id, key_ref)]
                if key is None:  # erased: the general path names the fields
                    raise LookupError(subject_id)
                data.update(
                    orjson.loads(
                        key_cipher(key).decrypt(
                            personal[:NONCE], personal[NONCE:], event_id + payload.PERSONAL_AAD
                        )
                    )
                )
            if schema_version != self.catalog.schema(etype).version:
                raise LookupError(etype)
        except Exception:
            return self.decode(row)
        if type(data) is not dict:
            return self.decode(row)
        return StoredEvent(position, event_id, self.tenant_id, stream_id, version, etype,
                           schema_version, occurred_at, recorded_at, data, bytes(meta),
                           bytes(prev_hash), bytes(digest))  # fmt: skip

    def payload(
        self,
        position: int,
        event_id: bytes,
        etype: str,
        schema_version: int,
        key_id: str,
        blob: bytes,
        subject_id: str | None,
        key_ref: str | None,
        personal: bytes | None,
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """Decrypt and parse a row's payload: ``(data, erased_fields)``."""
        data = payload.decrypt_data(self.keyring, key_id, bytes(blob), event_id, position)
        erased: tuple[str, ...] = ()
        if personal is not None:
            if subject_id is None or key_ref is None:
                raise CorruptEventError(f"position {position}: personal fields without a subject key")
            key = self.subject_key(subject_id, key_ref)
            if key is None:  # the subject was erased: its fields read as null
                erased = payload.sealed_names(data, self.catalog.schema(etype).personal)
                data.update(dict.fromkeys(erased))
            else:
                data.update(payload.open_personal(bytes(personal), event_id, key, position))
        if schema_version != self.catalog.schema(etype).version:
            data = self.catalog.upcast(etype, schema_version, data)
        return data, erased
