"""The hash chain (invariant 2).

``hash = SHA-256(prev_hash || envelope || data || personal || metadata)`` (each part
length-prefixed), over the *stored* bytes (ciphertext), so crypto-shredding keeps the chain
verifiable. The envelope includes the position, so deleting or swapping rows breaks the
chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

GENESIS = bytes(32)


def envelope_bytes(row: Sequence[Any]) -> bytes:
    """The envelope of a row laid out as :class:`~hermes_fed.store.backend.Row`: every
    column but the payloads and hashes, as a JSON list in this order (the stored hashes
    depend on it: never change it)."""
    (tenant_id, position, event_id, stream_id, stream_version, type_, schema_version,
     occurred_at, recorded_at, key_id, subject_id, key_ref) = row[:12]  # fmt: skip
    return orjson.dumps(
        [
            event_id.hex(),
            tenant_id,
            stream_id,
            stream_version,
            position,
            type_,
            schema_version,
            occurred_at,
            recorded_at,
            key_id,
            subject_id,
            key_ref,
        ]
    )


def link(prev_hash: bytes, envelope: bytes, data: bytes, personal: bytes | None, metadata: bytes) -> bytes:
    sealed = personal or b""
    return hashlib.sha256(
        b"".join(
            (
                prev_hash,
                len(envelope).to_bytes(4, "big"),
                envelope,
                len(data).to_bytes(4, "big"),
                data,
                len(sealed).to_bytes(4, "big"),
                sealed,
                metadata,
            )
        )
    ).digest()


def row_digest(row: Sequence[Any]) -> bytes:
    """The hash of a row laid out as :class:`~hermes_fed.store.backend.Row` (its own
    ``hash`` column, if there, is not read): what the append stores and ``verify``
    recomputes. Byte columns may be any bytes-like object."""
    return link(row[15], envelope_bytes(row), row[12], row[13], row[14])
