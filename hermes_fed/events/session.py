"""Events of a session stream (``session-<id>``): trajectories and user behaviour."""

from __future__ import annotations

from typing import Any

from .schema import EventRecord, event_type


@event_type("SessionStarted", personal=["user_ref"])
class SessionStarted(EventRecord):
    user_ref: str
    model_version: str
    variant: str | None = None
    ab_test_id: str | None = None


@event_type("TrajectoryRecorded", personal=["task", "messages", "final_response"])
class TrajectoryRecorded(EventRecord):
    trajectory_id: str
    task: str
    task_type: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    final_response: str


@event_type("OutputAccepted")
class OutputAccepted(EventRecord):
    trajectory_id: str


@event_type("RetryRequested")
class RetryRequested(EventRecord):
    trajectory_id: str


@event_type("OutputEdited")
class OutputEdited(EventRecord):
    trajectory_id: str
    edit_ratio: float


@event_type("SessionContinued")
class SessionContinued(EventRecord):
    trajectory_id: str


@event_type("ErrorReported")
class ErrorReported(EventRecord):
    trajectory_id: str
    reason: str = ""


@event_type("SessionEnded")
class SessionEnded(EventRecord):
    reason: str = ""


@event_type("TrajectoryJudged")
class TrajectoryJudged(EventRecord):
    trajectory_id: str
    judge: str
    score: float
    rationale: str = ""


@event_type("HumanLabeled")
class HumanLabeled(EventRecord):
    trajectory_id: str
    score: float
    labeler: str = ""


@event_type("TrajectoryCurated")
class TrajectoryCurated(EventRecord):
    """A deployer vouches for an imported trajectory (``node import --curated``): it scores
    ``score``, or the ``[quality.curated] prior`` when None, while no user reacts to it.
    Written by the node itself, never accepted over ingest."""

    trajectory_id: str
    source: str = ""
    score: float | None = None


@event_type("VariantAssigned", personal=["user_ref"])
class VariantAssigned(EventRecord):
    ab_test_id: str
    user_ref: str
    variant: str
