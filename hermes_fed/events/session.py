"""Events of a session stream (``session-<id>``): trajectories and user behaviour.

Limits (``Range``, ``MaxLen``) are those of the scales the quality pipeline reads (an edit
ratio in [0, 1], judges in [0, 1], labels in [-1, 1]) and of the read-model columns that
hold ids and names (``hermes_fed.quality.read_model``).
"""

from __future__ import annotations

from typing import Annotated, Any

from .schema import EventRecord, MaxLen, Range, event_type

TrajectoryId = Annotated[str, MaxLen(200)]
UserRef = Annotated[str, MaxLen(256)]
Name = Annotated[str, MaxLen(200)]
Unit = Annotated[float, Range(0.0, 1.0)]  # 1 is best (judges) or a full rewrite (edits)
Label = Annotated[float, Range(-1.0, 1.0)]  # the combined score's scale


@event_type("SessionStarted", personal=["user_ref"])
class SessionStarted(EventRecord):
    user_ref: UserRef
    model_version: Name
    variant: Annotated[str, MaxLen(128)] | None = None
    ab_test_id: Annotated[str, MaxLen(128)] | None = None


@event_type("TrajectoryRecorded", personal=["task", "messages", "final_response"])
class TrajectoryRecorded(EventRecord):
    trajectory_id: TrajectoryId
    task: str
    task_type: Name
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
    trajectory_id: TrajectoryId


@event_type("RetryRequested")
class RetryRequested(EventRecord):
    trajectory_id: TrajectoryId


@event_type("OutputEdited")
class OutputEdited(EventRecord):
    trajectory_id: TrajectoryId
    edit_ratio: Unit


@event_type("SessionContinued")
class SessionContinued(EventRecord):
    trajectory_id: TrajectoryId


@event_type("ErrorReported")
class ErrorReported(EventRecord):
    trajectory_id: TrajectoryId
    reason: str = ""


@event_type("SessionEnded")
class SessionEnded(EventRecord):
    reason: str = ""


@event_type("TrajectoryJudged")
class TrajectoryJudged(EventRecord):
    trajectory_id: TrajectoryId
    judge: Annotated[str, MaxLen(100)]
    score: Unit
    rationale: str = ""


@event_type("HumanLabeled")
class HumanLabeled(EventRecord):
    trajectory_id: TrajectoryId
    score: Label
    labeler: Name = ""


@event_type("TrajectoryCurated")
class TrajectoryCurated(EventRecord):
    """A deployer vouches for an imported trajectory (``node import --curated``): it scores
    ``score``, or the ``[quality.curated] prior`` when None, while no user reacts to it.
    Written by the node itself, never accepted over ingest."""

    trajectory_id: TrajectoryId
    source: Name = ""
    score: Label | None = None


@event_type("VariantAssigned", personal=["user_ref"])
class VariantAssigned(EventRecord):
    ab_test_id: Annotated[str, MaxLen(128)]
    user_ref: UserRef
    variant: Annotated[str, MaxLen(128)]
