"""Deterministic A/B arm assignment by a keyed hash: moved to :mod:`hermes_fed.serving.assignment`.

The pure functions live in ``hermes_fed/serving`` now, where the gateway's routing and the
ingest service's ``AssignVariant`` both reach them (DESIGN.md §2: what both apps need lives
in ``hermes_fed``). This module keeps the old import path working.
"""

from hermes_fed.serving.assignment import (
    Arm,
    arm_for_point,
    assign,
    assignment_event_id,
    assignment_point,
    check_arms,
)

__all__ = ["Arm", "arm_for_point", "assign", "assignment_event_id", "assignment_point",
           "check_arms"]
