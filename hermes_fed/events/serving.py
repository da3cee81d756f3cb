"""Events of a node's serving log (stream ``traffic-plan``): which version serves whom."""

from __future__ import annotations

from typing import Any

from .schema import EventRecord, event_type


@event_type("TrafficPlanApplied")
class TrafficPlanApplied(EventRecord):
    """The node's traffic plan from now on (DESIGN.md §10).

    ``arms`` holds ``{"variant": name, "model_version": version, "share": float,
    "production": bool}`` per arm (``hermes_fed.serving.plan.TrafficPlan``); the key names
    are the redactor's schema-identifier keys, so versions and arm names are stored as
    given. A user's arm is the node's keyed hash of (user, ``ab_test_id``); requests
    without a user go to the arm marked ``production``.
    """

    ab_test_id: str
    arms: list[dict[str, Any]]
