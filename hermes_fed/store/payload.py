"""Sealing event payloads (DESIGN.md §3).

An event's data is stored in two parts:

- the *public* part (every field the schema does not mark personal, and personal fields
  that are null), canonical JSON encrypted under the tenant's active data key;
- the *personal* part (the personal fields' values), canonical JSON encrypted once, as
  one blob, under the subject's own key. Erasing the subject destroys that key: the blob
  can no longer be opened (crypto-shredding), while the public part and the hash chain,
  which is over the ciphertext, stay intact.

The personal blob is not encrypted a second time under the tenant key: the subject key is
itself stored wrapped under the tenant key, so the tenant key already guards it, and one
AES-GCM pass per part is all the append and the read pay.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.exceptions import InvalidTag

from hermes_fed.errors import CorruptEventError, KeyringError
from hermes_fed.events.codec import loads

from .keyring import Keyring, open_sealed, seal

PLAIN_KEY_ID = "-"  # the row is not encrypted (no key ring configured)
PERSONAL_AAD = b"|personal"

# (subject_id, key_ref) -> subject key, or None when the subject was erased
SubjectKeyLookup = Callable[[str, str], bytes | None]


def split_personal(data: dict[str, Any], personal: frozenset[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(public, personal)`` parts of validated data; null personal fields stay public."""
    public: dict[str, Any] = {}
    sealed: dict[str, Any] = {}
    for name, value in data.items():
        if name in personal and value is not None:
            sealed[name] = value
        else:
            public[name] = value
    return public, sealed


def seal_personal(plaintext: bytes, event_id: bytes, subject_key: bytes) -> bytes:
    """``event_id``: the id's 16 bytes, as stored."""
    return seal(subject_key, plaintext, event_id + PERSONAL_AAD)


def open_personal(blob: bytes, event_id: bytes, subject_key: bytes, position: int) -> dict[str, Any]:
    """``event_id``: the id's 16 bytes, as stored."""
    try:
        plain = open_sealed(subject_key, blob, event_id + PERSONAL_AAD)
    except (InvalidTag, ValueError):
        raise CorruptEventError(f"position {position}: personal fields fail authentication") from None
    return _object(plain, position, "personal fields")


def sealed_names(public: Mapping[str, Any], personal: frozenset[str]) -> tuple[str, ...]:
    """The personal fields held in the sealed part: those the public part lacks."""
    return tuple(sorted(personal.difference(public)))


def encrypt_data(keyring: Keyring | None, plaintext: bytes, event_id: bytes) -> tuple[str, bytes]:
    """``event_id``: the id's 16 bytes, as stored."""
    if keyring is None:
        return PLAIN_KEY_ID, plaintext
    return keyring.encrypt(plaintext, event_id)


def decrypt_data(
    keyring: Keyring | None, key_id: str, blob: bytes, event_id: bytes, position: int
) -> dict[str, Any]:
    """``event_id``: the id's 16 bytes, as stored."""
    if key_id == PLAIN_KEY_ID:
        plain = blob
    else:
        if keyring is None:
            raise KeyringError(
                f"position {position} is encrypted with key {key_id!r} but no key ring is configured"
            )
        try:
            plain = keyring.decrypt(key_id, blob, event_id)
        except InvalidTag:
            raise CorruptEventError(
                f"position {position}: data fails authentication under key {key_id!r} "
                "(the row was altered, or the key ring holds a different key with that id)"
            ) from None
    return _object(plain, position, "data")


def _object(plain: bytes, position: int, what: str) -> dict[str, Any]:
    try:
        data = loads(plain)
    except ValueError:
        raise CorruptEventError(f"position {position}: {what} is not valid JSON") from None
    if type(data) is not dict:
        raise CorruptEventError(f"position {position}: {what} is not a JSON object")
    return data


def new_subject_key() -> tuple[bytes, str]:
    return secrets.token_bytes(32), secrets.token_hex(4)
