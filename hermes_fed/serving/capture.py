"""The events one captured call appends to its session stream, and feedback events.

How a multi-call session maps to events (decided here, documented in the README):

* first call of a session: ``SessionStarted{user_ref, model_version, variant, ab_test_id}``
  (recorded by the gateway from its own routing, never by the agent; its event id is a
  function of the stream, so a racing second first call cannot record it twice);
* a call that starts a trajectory: ``TrajectoryRecorded`` with the call's turns and its
  answer (``task`` is the first user turn, ``final_response`` the answer's text);
* a call that extends one: ``TrajectoryExtended`` with only the new turns and the answer;
* a re-sent last user message within the retry window: ``RetryRequested`` for the branch
  asked again, in the same commit as the new branch.

Readers that need whole trajectories (training, judges, export) fold them with
:func:`hermes_fed.serving.assembly.assemble_trajectories`; the quality read model keys a
trajectory on its first recording (task, task type) and scores it from feedback, which
names the trajectory id every answer carries.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hermes_fed.errors import FormatError
from hermes_fed.events import NewEvent
from hermes_fed.events.session import (
    ErrorReported,
    OutputAccepted,
    OutputEdited,
    RetryRequested,
    SessionContinued,
    SessionStarted,
    TrajectoryExtended,
    TrajectoryRecorded,
)

from .assembly import Reservation, capture_metadata
from .conversion import first_user_text

ACTOR = "gateway"
_SESSION_NAMESPACE = uuid.UUID("5d3b8f0e-7c4a-4e59-9a71-2b6c0f1d8e42")
SIGNALS: Mapping[str, str] = {
    "accepted": OutputAccepted.TYPE, "retried": RetryRequested.TYPE,
    "edited": OutputEdited.TYPE, "continued": SessionContinued.TYPE,
    "error": ErrorReported.TYPE,
}
MAX_REASON_CHARS = 2000


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who made a call and where the plan sent it."""

    stream_id: str
    user_ref: str
    model_version: str
    variant: str | None
    ab_test_id: str | None
    task_type: str


def session_started_id(stream_id: str) -> uuid.UUID:
    return uuid.uuid5(_SESSION_NAMESPACE, f"{stream_id}/SessionStarted")


def call_events(ctx: CallContext, reservation: Reservation, turns: Sequence[Mapping[str, Any]],
                answer: Mapping[str, Any], tools: Sequence[Mapping[str, Any]],
                chains: Sequence[int], tools_key: int, branch_tools_key: int | None,
                ) -> list[NewEvent]:
    """The events of one answered call. ``turns`` are the call's turns and ``chains`` their
    chain values followed by the answer's (trajectory shape throughout)."""
    tid = reservation.trajectory_id
    subject = ctx.user_ref
    events: list[NewEvent] = []
    if reservation.start_session:
        events.append(NewEvent(
            stream_id=ctx.stream_id, type=SessionStarted.TYPE, subject=subject,
            event_id=session_started_id(ctx.stream_id), metadata={"actor": ACTOR},
            data={"user_ref": ctx.user_ref, "model_version": ctx.model_version,
                  "variant": ctx.variant, "ab_test_id": ctx.ab_test_id}))
    if reservation.retry_of is not None:
        events.append(NewEvent(stream_id=ctx.stream_id, type=RetryRequested.TYPE,
                               subject=subject, metadata={"actor": ACTOR},
                               data={"trajectory_id": reservation.retry_of}))
    new_turns = [*turns[reservation.base:], answer]
    final = str(answer.get("content") or "")
    if reservation.new:
        data: dict[str, Any] = {
            "trajectory_id": tid, "task": first_user_text(turns), "task_type": ctx.task_type,
            "messages": new_turns, "tools": list(tools), "final_response": final}
        kind = TrajectoryRecorded.TYPE
    else:
        data = {"trajectory_id": tid, "messages": new_turns, "final_response": final,
                "tools": list(tools) if tools_key != branch_tools_key else None,
                "model_version": ctx.model_version}
        kind = TrajectoryExtended.TYPE
    events.append(NewEvent(
        stream_id=ctx.stream_id, type=kind, data=data, subject=subject,
        metadata={"actor": ACTOR,
                  **capture_metadata(tid, chains[reservation.base:], tools_key)}))
    return events


def feedback_event(stream_id: str, trajectory_id: str, signal: str, *,
                   edit_ratio: float | None = None, reason: str | None = None,
                   actor: str = ACTOR) -> NewEvent:
    """The event of one feedback signal; raises ``FormatError`` naming the bad field."""
    kind = SIGNALS.get(signal)
    if kind is None:
        raise FormatError(f"signal: expected one of {'|'.join(SIGNALS)}, got {str(signal)[:40]!r}")
    data: dict[str, Any] = {"trajectory_id": trajectory_id}
    if signal == "edited":
        if isinstance(edit_ratio, bool) or not isinstance(edit_ratio, int | float) \
                or not 0.0 <= float(edit_ratio) <= 1.0:
            raise FormatError(f"edit_ratio: expected a number in [0, 1] with signal 'edited', "
                              f"got {edit_ratio!r}")
        data["edit_ratio"] = float(edit_ratio)
    elif edit_ratio is not None:
        raise FormatError(f"edit_ratio: only signal 'edited' takes one (signal {signal!r})")
    if reason is not None:
        if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
            raise FormatError(f"reason: expected a string of at most {MAX_REASON_CHARS} "
                              "characters")
        if signal != "error":
            raise FormatError(f"reason: only signal 'error' takes one (signal {signal!r})")
        data["reason"] = reason
    return NewEvent(stream_id=stream_id, type=kind, data=data, metadata={"actor": actor})
