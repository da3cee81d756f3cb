"""Pseudonymous ``user_ref``: a user id that is itself personal data is stored as a keyed hash.

Deployers often key users by e-mail address or phone number. Such a ``user_ref`` is
replaced, before the event is stored (the redaction gate), by ``ref-`` and the first 128
bits of ``HMAC-SHA256(tenant secret, "user_ref" ␟ normalised value)`` (RFC 2104): stable
for the tenant, so a user's sessions still belong together and erasure can find them, and
not invertible without the tenant's secret (a plain hash of an e-mail is, by dictionary).

Invariants (tests cite them)
----------------------------
U1. A ``user_ref`` that is an e-mail address or a phone number is never stored; its
    pseudonym is, as the event's ``user_ref`` and its subject.
U2. The pseudonym of a value is the same in every process of the tenant; trivially different
    spellings (case of an e-mail, spaces in a phone number) share it.
U3. Any other ``user_ref`` (an opaque id such as ``u-42``, or a pseudonym) is kept as is, so
    mapping twice changes nothing and erasure by the pseudonym works too.
U4. A/B assignment hashes the ``user_ref`` the gateway and the SDK send (the original), in
    the gateway's routing and in ingest's ``AssignVariant`` alike; only the stored copy is
    a pseudonym. Arms stay what they were before pseudonymisation existed.
"""

from __future__ import annotations

import hashlib
import hmac
import re

PREFIX = "ref-"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+?[\d\s().\-/]+")
_MIN_PHONE_DIGITS = 7


def is_personal_ref(user_ref: str) -> bool:
    """Whether ``user_ref`` is an e-mail address or a phone number (U1)."""
    value = user_ref.strip()
    if _EMAIL.fullmatch(value):
        return True
    return bool(_PHONE.fullmatch(value)) and sum(c.isdigit() for c in value) >= _MIN_PHONE_DIGITS


def _normalised(user_ref: str) -> str:
    value = user_ref.strip()
    if "@" in value:
        return value.lower()
    return ("+" if value.startswith("+") else "") + "".join(c for c in value if c.isdigit())


def pseudonymous_ref(secret: bytes, user_ref: str) -> str:
    """The ``user_ref`` to store: the keyed pseudonym of a personal one, else ``user_ref``."""
    if not is_personal_ref(user_ref):
        return user_ref
    message = b"user_ref\x1f" + _normalised(user_ref).encode("utf-8")
    # hmac.new keeps the GIL (hmac.digest releases it: 5 ms to get it back under load)
    return PREFIX + hmac.new(secret, message, hashlib.sha256).digest()[:16].hex()
