"""Tenant key ring and envelope encryption (AES-GCM).

A key ring holds a tenant's data keys by id (the active one encrypts, all decrypt, so keys
rotate without rewriting the log) and an HMAC secret (subject ids, placeholders, variant
assignment). It lives in a JSON file (mode 0600) or in an environment variable.
Per-subject keys are random, wrapped under the active data key, and stored in the
database; destroying one shreds the subject's personal fields (DESIGN.md §3).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hermes_fed.errors import KeyringError

ENV_VAR = "HERMES_FED_KEYRING"
NONCE = 12


class _NoncePool:
    """Random 96-bit AES-GCM nonces, drawn from the OS a page at a time.

    One ``os.urandom`` call per nonce cost as much as the encryption of a 1 KB event; the
    nonces are just as random when sliced from a larger read. A forked child must never
    hand out the parent's buffered bytes (the same nonce under the same key breaks GCM),
    so the buffer is discarded in the child at fork.
    """

    _CHUNK = NONCE * 341  # 4092 bytes

    def __init__(self) -> None:
        self._buf = b""
        self._at = 0
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._discard)

    def _discard(self) -> None:
        self._buf, self._at = b"", 0

    def take(self) -> bytes:
        with self._lock:
            at = self._at
            if at + NONCE > len(self._buf):
                self._buf, at = os.urandom(self._CHUNK), 0
            self._at = at + NONCE
            return self._buf[at : at + NONCE]


_nonces = _NoncePool()
new_nonce = _nonces.take


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise KeyringError(f"{what}: not valid base64") from None


@dataclass(slots=True)
class Keyring:
    tenant_id: str
    active: str
    keys: dict[str, bytes]
    hmac_secret: bytes
    _aead: dict[str, AESGCM] = field(default_factory=dict, repr=False)
    _subject_ids: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.active not in self.keys:
            raise KeyringError(f"active key {self.active!r} is not in the key ring")
        for key_id, key in self.keys.items():
            if len(key) != 32:
                raise KeyringError(f"key {key_id!r} must be 32 bytes, got {len(key)}")
        if len(self.hmac_secret) < 16:
            raise KeyringError("hmac_secret must be at least 16 bytes")

    # --- construction ---------------------------------------------------------------
    @classmethod
    def generate(cls, tenant_id: str) -> Keyring:
        return cls(tenant_id, "k1", {"k1": AESGCM.generate_key(256)}, secrets.token_bytes(32))

    @classmethod
    def from_json(cls, text: str, source: str = "key ring") -> Keyring:
        try:
            raw: dict[str, Any] = json.loads(text)
            return cls(
                tenant_id=str(raw["tenant_id"]),
                active=str(raw["active"]),
                keys={k: _unb64(v, f"{source}: key {k}") for k, v in raw["keys"].items()},
                hmac_secret=_unb64(raw["hmac_secret"], f"{source}: hmac_secret"),
            )
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
            raise KeyringError(f"{source}: malformed key ring ({type(exc).__name__}: {exc})") from None

    @classmethod
    def from_file(cls, path: str | Path) -> Keyring:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise KeyringError(f"cannot read key ring {path}: {exc.strerror}") from None
        return cls.from_json(text, str(path))

    @classmethod
    def from_env(cls, var: str = ENV_VAR) -> Keyring:
        text = os.environ.get(var)
        if not text:
            raise KeyringError(f"environment variable {var} is not set")
        return cls.from_json(text, f"${var}")

    @classmethod
    def load_or_create(cls, path: str | Path, tenant_id: str) -> Keyring:
        """Load the key ring at ``path``, creating it (mode 0600) if it does not exist."""
        p = Path(path)
        if p.exists():
            ring = cls.from_file(p)
            if ring.tenant_id != tenant_id:
                raise KeyringError(f"key ring {p} belongs to tenant {ring.tenant_id!r}, not {tenant_id!r}")
            return ring
        ring = cls.generate(tenant_id)
        ring.save(p)
        return ring

    def to_json(self) -> str:
        return json.dumps(
            {
                "tenant_id": self.tenant_id,
                "active": self.active,
                "keys": {k: _b64(v) for k, v in self.keys.items()},
                "hmac_secret": _b64(self.hmac_secret),
            },
            indent=2,
        )

    def save(self, path: str | Path) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.to_json())

    def rotate(self) -> str:
        """Add a new data key and make it active; old keys still decrypt old rows."""
        n = 1 + max(int(k[1:]) for k in self.keys if k[1:].isdigit())
        key_id = f"k{n}"
        self.keys[key_id] = AESGCM.generate_key(256)
        self.active = key_id
        return key_id

    # --- crypto ----------------------------------------------------------------------
    def fingerprint(self, key_id: str) -> str:
        """A public check value of a key: detects a wrong key before any row is decrypted."""
        return hmac.new(self.key(key_id), b"hermes-fed key check", hashlib.sha256).hexdigest()[:16]

    def key(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            raise KeyringError(
                f"key {key_id!r} of tenant {self.tenant_id!r} is not in the key ring"
            ) from None

    def cipher(self, key_id: str) -> AESGCM:
        """The AES-GCM cipher of a data key (built once per key id)."""
        aead = self._aead.get(key_id)
        if aead is None:
            aead = self._aead[key_id] = AESGCM(self.key(key_id))
        return aead

    def encrypt(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        nonce = new_nonce()
        return self.active, nonce + self.cipher(self.active).encrypt(nonce, plaintext, aad)

    def decrypt(self, key_id: str, blob: bytes, aad: bytes) -> bytes:
        """Raises ``InvalidTag`` on a corrupt blob (the caller names the position)."""
        return self.cipher(key_id).decrypt(blob[:NONCE], blob[NONCE:], aad)

    def subject_id(self, user_ref: str) -> str:
        """A stable pseudonymous id for a subject (HMAC, so the user_ref is not stored)."""
        found = self._subject_ids.get(user_ref)
        if found is None:
            # hmac.new, not hmac.digest: the one-shot path releases the GIL around its
            # microsecond of work, and a thread beside that holds it (the gateway's event
            # loop, a gRPC worker) makes it wait the switch interval (5 ms) to get it back
            found = hmac.new(self.hmac_secret, b"subject:" + user_ref.encode(),
                             hashlib.sha256).hexdigest()[:32]
            if len(self._subject_ids) >= 100_000:  # bounded: a long-lived daemon sees many users
                self._subject_ids.clear()
            self._subject_ids[user_ref] = found
        return found

    def wrap(self, subject_key: bytes, subject_id: str) -> tuple[str, bytes]:
        return self.encrypt(subject_key, b"subject-key:" + subject_id.encode())

    def unwrap(self, key_id: str, wrapped: bytes, subject_id: str) -> bytes:
        try:
            return self.decrypt(key_id, wrapped, b"subject-key:" + subject_id.encode())
        except InvalidTag:
            raise KeyringError(f"subject key {subject_id} cannot be unwrapped with key {key_id!r}") from None


@functools.lru_cache(maxsize=256)
def key_cipher(key: bytes) -> AESGCM:
    """The AES-GCM cipher of a raw key (a subject key), cached."""
    # Replaying a log opens each subject's fields many times; building the cipher (key
    # schedule) per field cost as much as the decryption itself. Whether a key may be used
    # at all is decided by the caller's key lookup (an erased subject's lookup is None).
    return AESGCM(key)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = new_nonce()
    return nonce + key_cipher(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes) -> bytes:
    return key_cipher(key).decrypt(blob[:NONCE], blob[NONCE:], aad)
