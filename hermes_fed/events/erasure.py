"""Erasure (``subject-<id>`` stream)."""

from __future__ import annotations

from .schema import EventRecord, event_type


@event_type("SubjectErased", personal=["user_ref"])
class SubjectErased(EventRecord):
    user_ref: str
    reason: str = ""
