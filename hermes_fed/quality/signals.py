"""Implicit-feedback signals per trajectory, folded from session events.

Decisions (tested in ``tests/unit/quality/test_signals.py``):

* **Order does not matter.** The fold is commutative: acceptance is "any
  ``OutputAccepted``", retries and errors are counts, the edit ratio is a maximum. Events
  that arrive before their ``TrajectoryRecorded`` (out of order, or from a client that
  reports feedback first) are kept; the trajectory is an *orphan* until it is recorded.
* **Unknown trajectories never crash.** Feedback naming a trajectory that is never recorded
  stays an orphan: it is reported, never scored, never selected for training.
* **Several edits: the largest ratio counts.** Every ``OutputEdited`` measures the distance
  between the model's output and what the user kept; the largest is the best lower bound on
  how far the output was from acceptable. Summing double-counts overlapping edits; the last
  ratio lets a small final touch-up hide an earlier rewrite. Ratios are clamped to [0, 1].
* **Acceptance after retries** keeps both: the acceptance bonus and the retry count (the
  formula of DESIGN.md §5 then applies the ``>= 3 retries`` penalty on its own).
* **Several trajectories per session** are independent: each feedback event names its
  trajectory; session-level order only matters for preference pairs (``preference.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

TRAJECTORY_RECORDED = "TrajectoryRecorded"
OUTPUT_ACCEPTED = "OutputAccepted"
RETRY_REQUESTED = "RetryRequested"
OUTPUT_EDITED = "OutputEdited"
SESSION_CONTINUED = "SessionContinued"
ERROR_REPORTED = "ErrorReported"

FEEDBACK_TYPES: frozenset[str] = frozenset(
    {OUTPUT_ACCEPTED, RETRY_REQUESTED, OUTPUT_EDITED, SESSION_CONTINUED, ERROR_REPORTED}
)


@dataclass(frozen=True, slots=True)
class TrajectorySignals:
    """The behavioural signals of one trajectory (a commutative summary of its events)."""

    trajectory_id: str
    recorded: bool = False
    accepted: bool = False
    retries: int = 0
    edits: int = 0
    edit_ratio: float = 0.0
    continued: bool = False
    errors: int = 0

    @property
    def orphan(self) -> bool:
        """Feedback arrived but the trajectory itself was not (yet) recorded."""
        return not self.recorded

    def __add__(self, other: TrajectorySignals) -> TrajectorySignals:
        """Merge two partial folds of the same trajectory (order-free)."""
        if other.trajectory_id != self.trajectory_id:
            raise ValueError(
                f"cannot merge signals of {self.trajectory_id!r} and {other.trajectory_id!r}"
            )
        return TrajectorySignals(
            trajectory_id=self.trajectory_id,
            recorded=self.recorded or other.recorded,
            accepted=self.accepted or other.accepted,
            retries=self.retries + other.retries,
            edits=self.edits + other.edits,
            edit_ratio=max(self.edit_ratio, other.edit_ratio),
            continued=self.continued or other.continued,
            errors=self.errors + other.errors,
        )


def clamp_edit_ratio(value: float) -> float:
    """Clamp an edit ratio to [0, 1]; a NaN counts as a full rewrite (1.0)."""
    if value != value:  # NaN: the schema refuses it, but a bad client must not score high
        return 1.0
    return min(1.0, max(0.0, float(value)))


def apply_event(signals: TrajectorySignals, event_type: str,
                data: Mapping[str, Any]) -> TrajectorySignals:
    """Return ``signals`` updated by one session event; other event types change nothing."""
    # Positional construction, not dataclasses.replace: this runs once per event in a
    # rebuild, and replace() costs several times more.
    s = signals
    if event_type == TRAJECTORY_RECORDED:
        return s if s.recorded else TrajectorySignals(
            s.trajectory_id, True, s.accepted, s.retries, s.edits, s.edit_ratio, s.continued,
            s.errors)
    if event_type == OUTPUT_ACCEPTED:
        return s if s.accepted else TrajectorySignals(
            s.trajectory_id, s.recorded, True, s.retries, s.edits, s.edit_ratio, s.continued,
            s.errors)
    if event_type == RETRY_REQUESTED:
        return TrajectorySignals(s.trajectory_id, s.recorded, s.accepted, s.retries + 1,
                                 s.edits, s.edit_ratio, s.continued, s.errors)
    if event_type == OUTPUT_EDITED:
        ratio = clamp_edit_ratio(float(data.get("edit_ratio", 1.0)))
        return TrajectorySignals(s.trajectory_id, s.recorded, s.accepted, s.retries,
                                 s.edits + 1, max(s.edit_ratio, ratio), s.continued, s.errors)
    if event_type == SESSION_CONTINUED:
        return s if s.continued else TrajectorySignals(
            s.trajectory_id, s.recorded, s.accepted, s.retries, s.edits, s.edit_ratio, True,
            s.errors)
    if event_type == ERROR_REPORTED:
        return TrajectorySignals(s.trajectory_id, s.recorded, s.accepted, s.retries, s.edits,
                                 s.edit_ratio, s.continued, s.errors + 1)
    return s


def apply_event_to_row(row: MutableMapping[str, Any], event_type: str,
                       data: Mapping[str, Any]) -> None:
    """:func:`apply_event` on a mapping that holds the signal fields under their names (a
    read-model row), changing only the field the event changes and building no signals
    objects (the bulk rebuild's hot path; a property test keeps the two equal)."""
    if event_type == RETRY_REQUESTED:
        row["retries"] += 1
    elif event_type == OUTPUT_ACCEPTED:
        row["accepted"] = True
    elif event_type == OUTPUT_EDITED:
        ratio = clamp_edit_ratio(float(data.get("edit_ratio", 1.0)))
        row["edits"] += 1
        row["edit_ratio"] = max(row["edit_ratio"], ratio)
    elif event_type == SESSION_CONTINUED:
        row["continued"] = True
    elif event_type == ERROR_REPORTED:
        row["errors"] += 1
    elif event_type == TRAJECTORY_RECORDED:
        row["recorded"] = True


def fold_signals(events: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, TrajectorySignals]:
    """Fold ``(event_type, data)`` pairs into signals per trajectory id.

    Events without a string ``trajectory_id`` (``SessionStarted``, ``SessionEnded``) and
    event types outside the quality vocabulary are skipped.
    """
    out: dict[str, TrajectorySignals] = {}
    for event_type, data in events:
        if event_type != TRAJECTORY_RECORDED and event_type not in FEEDBACK_TYPES:
            continue
        trajectory_id = data.get("trajectory_id")
        if not isinstance(trajectory_id, str):
            continue
        current = out.get(trajectory_id) or TrajectorySignals(trajectory_id)
        out[trajectory_id] = apply_event(current, event_type, data)
    return out


def orphans(signals: Mapping[str, TrajectorySignals]) -> list[str]:
    """Ids of trajectories with feedback but no ``TrajectoryRecorded``, sorted."""
    return sorted(t for t, s in signals.items() if s.orphan)
