"""Deterministic A/B arm assignment by a keyed hash (DESIGN.md §8, §10).

A user's point in [0, 1) is the first 64 bits of ``HMAC-SHA256(secret, test_id ␟ user_ref)``
divided by 2^64; arm *k* owns the interval between the cumulative normalised weights of the
arms before it and its own. Because the key is the tenant's secret, the assignment is stable
across restarts and machines of the same tenant, yet nobody without the secret can predict
or steer it (unlike a plain hash of the user id, as in Kohavi et al., *Trustworthy Online
Controlled Experiments*, 2020, ch. 14, which assumes a public salt).

Invariants (tests cite them):

A1. Same secret, test and user -> same arm, in any process.
A2. Over many users, the share of arm *k* is its normalised weight (binomial test).
A3. Assignments for different tests are independent (the test id is in the hashed message).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from hermes_fed.events.codec import canonical_json

_SEP = "\x1f"  # unit separator: cannot occur in ids, so ("a", "b␟c") != ("a␟b", "c")


@dataclass(frozen=True, slots=True)
class Arm:
    """One arm of a test and its share of users (weights are normalised over the arms)."""

    name: str
    weight: float

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("arm name must not be empty")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"arm {self.name!r}: weight must be finite and > 0, got {self.weight}")


def check_arms(arms: Sequence[Arm]) -> None:
    """Raise ``ValueError`` unless there are >= 2 arms with distinct names."""
    if len(arms) < 2:
        raise ValueError(f"an A/B test needs at least 2 arms, got {len(arms)}")
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ValueError("arm names must be distinct")


def assignment_point(secret: bytes, ab_test_id: str, user_ref: str) -> float:
    """The user's point in [0, 1): the first 64 bits of the keyed hash over 2^64."""
    message = f"{ab_test_id}{_SEP}{user_ref}".encode()
    # hmac.new keeps the GIL (hmac.digest releases it: 5 ms to get it back under load)
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def arm_for_point(point: float, arms: Sequence[Arm]) -> Arm:
    """The arm whose cumulative-weight interval holds ``point``."""
    check_arms(arms)
    total = math.fsum(a.weight for a in arms)
    cumulative = 0.0
    for arm in arms:
        cumulative += arm.weight / total
        if point < cumulative:
            return arm
    return arms[-1]  # point within rounding of 1.0


def assign(secret: bytes, ab_test_id: str, user_ref: str, arms: Sequence[Arm]) -> tuple[Arm, float]:
    """Assign ``user_ref`` to an arm of ``ab_test_id``; returns the arm and the user's point."""
    if not ab_test_id:
        raise ValueError("ab_test_id must not be empty")
    if not user_ref:
        raise ValueError("user_ref must not be empty")
    point = assignment_point(secret, ab_test_id, user_ref)
    return arm_for_point(point, arms), point


def assignment_event_id(
    secret: bytes, ab_test_id: str, user_ref: str, arms: Sequence[Arm]
) -> uuid.UUID:
    """A deterministic id for the ``VariantAssigned`` event (a UUIDv8 from the keyed hash).

    Asking again for the same test, user and arms re-sends the same id, which the log
    answers as a duplicate (invariant 3): one recorded assignment per user, however often
    the agent asks. Changing the arms gives a new id, so a re-split is recorded too.
    """
    layout = canonical_json([[a.name, a.weight] for a in arms]).decode()
    message = f"VariantAssigned{_SEP}{ab_test_id}{_SEP}{user_ref}{_SEP}{layout}".encode()
    raw = bytearray(hmac.new(secret, message, hashlib.sha256).digest()[:16])
    raw[6] = 0x80 | (raw[6] & 0x0F)  # version 8 (RFC 9562, custom)
    raw[8] = 0x80 | (raw[8] & 0x3F)  # RFC 4122 variant
    return uuid.UUID(bytes=bytes(raw))
