"""Builders of realistic session events for the quality tests."""

from __future__ import annotations

import json
from typing import Any

from hermes_fed.events import NewEvent, new_event
from hermes_fed.events.session import (
    ErrorReported,
    HumanLabeled,
    OutputAccepted,
    OutputEdited,
    RetryRequested,
    SessionContinued,
    SessionStarted,
    TrajectoryJudged,
    TrajectoryRecorded,
)

CALC = [{"name": "calculator", "description": "math", "parameters": {"type": "object"}}]


def trajectory(tid: str, a: int, b: int, *, answer: int | None = None,
               task_type: str = "arithmetic", task: str | None = None) -> TrajectoryRecorded:
    """A calculator trajectory for ``a + b`` whose final answer states ``answer``."""
    answer = a + b if answer is None else answer
    task = task or f"What is {a}+{b}?"
    return TrajectoryRecorded(  # type: ignore[call-arg]
        trajectory_id=tid, task=task, task_type=task_type,
        messages=[
            {"role": "user", "content": task},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "name": "calculator",
                 "arguments": {"expression": f"{a}+{b}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "name": "calculator",
             "content": json.dumps({"result": a + b})},
            {"role": "assistant", "content": f"{a}+{b} = {answer}"},
        ],
        tools=CALC, final_response=f"{a}+{b} = {answer}",
    )


FEEDBACK: dict[str, Any] = {
    "accept": lambda t: OutputAccepted(trajectory_id=t),  # type: ignore[call-arg]
    "retry": lambda t: RetryRequested(trajectory_id=t),  # type: ignore[call-arg]
    "continue": lambda t: SessionContinued(trajectory_id=t),  # type: ignore[call-arg]
    "error": lambda t: ErrorReported(trajectory_id=t, reason="wrong"),  # type: ignore[call-arg]
}


def ev(record: Any, session: str, user: str = "u-1") -> NewEvent:
    return new_event(record, stream_id=f"session-{session}", subject=user)


def started(session: str, user: str = "u-1") -> NewEvent:
    return ev(SessionStarted(user_ref=user, model_version="m1"),  # type: ignore[call-arg]
              session, user)


def feedback(kind: str, tid: str, session: str, user: str = "u-1") -> NewEvent:
    return ev(FEEDBACK[kind](tid), session, user)


def edited(tid: str, ratio: float, session: str) -> NewEvent:
    return ev(OutputEdited(trajectory_id=tid, edit_ratio=ratio),  # type: ignore[call-arg]
              session)


def judged(tid: str, judge: str, score: float, session: str) -> NewEvent:
    return ev(TrajectoryJudged(trajectory_id=tid, judge=judge,  # type: ignore[call-arg]
                               score=score, rationale=""), session)


def labeled(tid: str, score: float, session: str) -> NewEvent:
    return ev(HumanLabeled(trajectory_id=tid, score=score), session)  # type: ignore[call-arg]
