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


@event_type("TrajectoryExtended", personal=["messages", "final_response"])
class TrajectoryExtended(EventRecord):
    """Later calls of a trajectory recorded by the gateway: only what is new since the last.

    Each call of a chat API repeats the conversation; the gateway stores the turns that the
    trajectory's earlier events do not hold yet (the new request turns and the answer), so
    a call's capture does not grow with the session. The whole trajectory is the fold of its
    ``TrajectoryRecorded`` and its extensions, in stream order
    (:func:`hermes_fed.serving.assembly.assemble_trajectories`). ``tools`` replaces the
    trajectory's tools when the call offered different ones (None: unchanged);
    ``model_version`` is the version that answered this call.
    """

    trajectory_id: str
    messages: list[dict[str, Any]]
    final_response: str
    tools: list[dict[str, Any]] | None = None
    model_version: str | None = None


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


@event_type("VariantAssigned", personal=["user_ref"])
class VariantAssigned(EventRecord):
    ab_test_id: str
    user_ref: str
    variant: str
