"""The hash chain (invariant 2).

``hash = SHA-256(prev_hash || envelope || data || personal || metadata)`` (each part
length-prefixed), over the *stored* bytes (ciphertext), so crypto-shredding keeps the chain
verifiable. The envelope includes the position, so deleting or swapping rows breaks the
chain.
"""

from __future__ import annotations

import hashlib

import orjson

GENESIS = bytes(32)


def envelope_bytes(
    *,
    event_id: bytes,
    tenant_id: str,
    stream_id: str,
    stream_version: int,
    position: int,
    type: str,
    schema_version: int,
    occurred_at: int,
    recorded_at: int,
    key_id: str,
    subject_id: str | None,
    key_ref: str | None,
) -> bytes:
    return orjson.dumps(
        [
            event_id.hex(),
            tenant_id,
            stream_id,
            stream_version,
            position,
            type,
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
