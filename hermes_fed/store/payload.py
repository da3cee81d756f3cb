"""Sealing event payloads: tenant-key encryption of the data, and per-subject encryption of
the personal fields inside it (crypto-shredding, DESIGN.md §3)."""

from __future__ import annotations

import binascii
import secrets
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.exceptions import InvalidTag

from hermes_fed.errors import CorruptEventError, KeyringError
from hermes_fed.events.codec import canonical_json, loads

from .keyring import Keyring, open_sealed, seal

PLAIN_KEY_ID = "-"  # the row is not encrypted (no key ring configured)
SEALED = "$sealed"

# (subject_id, key_ref) -> subject key, or None when the subject was erased
SubjectKeyLookup = Callable[[str, str], bytes | None]


def seal_personal(
    data: dict[str, Any],
    personal: frozenset[str],
    event_id: uuid.UUID,
    subject_key: bytes,
    key_ref: str,
) -> dict[str, Any]:
    """Replace each personal field's value by its ciphertext under the subject key."""
    out = dict(data)
    for name in personal:
        if name in out and out[name] is not None:
            blob = seal(subject_key, canonical_json(out[name]), event_id.bytes + name.encode())
            out[name] = {SEALED: binascii.b2a_base64(blob, newline=False).decode(), "ref": key_ref}
    return out


def open_personal(
    data: dict[str, Any],
    personal: frozenset[str],
    event_id: uuid.UUID,
    subject_id: str | None,
    lookup: SubjectKeyLookup,
    position: int,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    erased: list[str] = []
    for name in personal:
        value = data.get(name)
        if not (isinstance(value, dict) and SEALED in value):
            continue
        if subject_id is None:
            raise CorruptEventError(f"position {position}: sealed field {name} without a subject")
        key = lookup(subject_id, str(value.get("ref")))
        if key is None:
            data[name] = None
            erased.append(name)
            continue
        try:
            plain = open_sealed(key, binascii.a2b_base64(value[SEALED]), event_id.bytes + name.encode())
        except (InvalidTag, ValueError, TypeError):
            raise CorruptEventError(f"position {position}: field {name} fails authentication") from None
        data[name] = loads(plain)
    return data, tuple(sorted(erased))


def encrypt_data(keyring: Keyring | None, plaintext: bytes, event_id: uuid.UUID) -> tuple[str, bytes]:
    if keyring is None:
        return PLAIN_KEY_ID, plaintext
    return keyring.encrypt(plaintext, event_id.bytes)


def decrypt_data(
    keyring: Keyring | None, key_id: str, blob: bytes, event_id: uuid.UUID, position: int
) -> dict[str, Any]:
    if key_id == PLAIN_KEY_ID:
        plain = blob
    else:
        if keyring is None:
            raise KeyringError(
                f"position {position} is encrypted with key {key_id!r} but no key ring is configured"
            )
        try:
            plain = keyring.decrypt(key_id, blob, event_id.bytes)
        except InvalidTag:
            raise CorruptEventError(
                f"position {position}: data fails authentication under key {key_id!r} "
                "(the row was altered, or the key ring holds a different key with that id)"
            ) from None
    try:
        data = loads(plain)
    except ValueError:
        raise CorruptEventError(f"position {position}: data is not valid JSON") from None
    if not isinstance(data, Mapping):
        raise CorruptEventError(f"position {position}: data is not a JSON object")
    return dict(data)


def new_subject_key() -> tuple[bytes, str]:
    return secrets.token_bytes(32), secrets.token_hex(4)
