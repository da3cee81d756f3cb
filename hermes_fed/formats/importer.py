"""Importing JSONL into a tenant's log, and exporting the curated training set.

Each good line becomes a session stream of two events, ``SessionStarted`` and
``TrajectoryRecorded``, appended through the store (whose gate is the redactor, so every
record is redacted before it reaches disk). Event ids are derived from the trajectory id, so
importing a file twice appends nothing the second time (invariant 3). Bad lines are
reported by number and skipped; a batch the store refuses is retried line by line so one
bad record cannot sink its neighbours.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hermes_fed.errors import HermesFedError
from hermes_fed.events import NewEvent, StoredEvent
from hermes_fed.events.session import SessionStarted, TrajectoryRecorded

from .jsonl import BadLine, ParsedLine, parse_jsonl
from .trajectory import TOP_LEVEL

# Namespace of the deterministic ids of imported events (uuid5 of trajectory id + type).
IMPORT_NAMESPACE = uuid.UUID("6f1c2a52-8d1e-4f57-9a57-0f3c7c5e2b10")

Append = Callable[[Sequence[NewEvent]], Sequence[Any]]  # results with a ``duplicate`` flag


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did: lines read, trajectories newly written, duplicates, bad lines."""

    lines: int
    imported: int
    duplicates: int
    bad_lines: tuple[BadLine, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        return (f"{self.imported} imported, {self.duplicates} already present, "
                f"{len(self.bad_lines)} bad of {self.lines} lines")


def trajectory_events(parsed: ParsedLine, *, source: str = "import") -> list[NewEvent]:
    """The session events of one imported trajectory (ids deterministic per trajectory)."""
    trajectory = parsed.trajectory
    tid = trajectory["trajectory_id"]
    record = parsed.record
    user_ref = str(record.get("user_ref") or f"{source}-{tid}")
    stream_id = f"session-{source}-{tid}"
    metadata: dict[str, Any] = {"source": source, "line": parsed.line}
    if parsed.labels:
        metadata["labels"] = dict(parsed.labels)
    started = {"user_ref": user_ref,
               "model_version": str(record.get("model_version") or "imported")}
    recorded = {k: trajectory[k] for k in TOP_LEVEL}
    return [
        NewEvent(stream_id=stream_id, type=SessionStarted.TYPE, data=started,
                 event_id=uuid.uuid5(IMPORT_NAMESPACE, f"{stream_id}/SessionStarted"),
                 metadata=metadata, subject=user_ref),
        NewEvent(stream_id=stream_id, type=TrajectoryRecorded.TYPE, data=recorded,
                 event_id=uuid.uuid5(IMPORT_NAMESPACE, f"{stream_id}/TrajectoryRecorded"),
                 metadata=metadata, subject=user_ref),
    ]


def _append_group(
    append: Append, group: list[tuple[ParsedLine, list[NewEvent]]], bad: list[BadLine]
) -> tuple[int, int]:
    """Append a batch; on refusal, retry each line alone to isolate the bad one."""
    try:
        results = append([e for _, events in group for e in events])
    except HermesFedError:
        if len(group) == 1:
            raise
        imported = duplicates = 0
        for item in group:
            try:
                i, d = _append_group(append, [item], bad)
            except HermesFedError as exc:
                bad.append(BadLine(item[0].line, f"refused by the store: {type(exc).__name__}: "
                                                 f"{exc}"))
                continue
            imported, duplicates = imported + i, duplicates + d
        return imported, duplicates
    # A trajectory counts as new when its TrajectoryRecorded event was written now.
    new = sum(1 for r in results[1::2] if not r.duplicate)
    return new, len(group) - new


def import_lines(
    lines: Iterable[bytes | str], fmt: str, append: Append, *, batch_size: int = 100,
    source: str = "import", progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Parse ``lines`` in ``fmt`` and append the good ones in batches of ``batch_size`` lines."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    bad: list[BadLine] = []
    group: list[tuple[ParsedLine, list[NewEvent]]] = []
    imported = duplicates = count = 0
    for item in parse_jsonl(lines, fmt):
        count = item.line
        if isinstance(item, BadLine):
            bad.append(item)
            continue
        tid = item.trajectory["trajectory_id"]
        if any(p.trajectory["trajectory_id"] == tid for p, _ in group):
            # A repeated id inside one transaction would collide with itself: flush first.
            i, d = _append_group(append, group, bad)
            imported, duplicates, group = imported + i, duplicates + d, []
        group.append((item, trajectory_events(item, source=source)))
        if len(group) >= batch_size:
            i, d = _append_group(append, group, bad)
            imported, duplicates, group = imported + i, duplicates + d, []
            if progress is not None:
                progress(count)
    if group:
        i, d = _append_group(append, group, bad)
        imported, duplicates = imported + i, duplicates + d
    bad.sort(key=lambda b: b.line)
    return ImportReport(count, imported, duplicates, tuple(bad))


@dataclass(frozen=True, slots=True)
class CuratedItem:
    trajectory: Mapping[str, Any]
    tier: str
    weight: float


def curated_trajectories(
    events: Iterable[StoredEvent], selection_id: str | None = None
) -> Iterator[CuratedItem]:
    """The trajectories of a ``TrainingDataSelected`` event (the latest, or ``selection_id``).

    Trajectories whose subject was erased are skipped (their text is gone).
    """
    trajectories: dict[str, StoredEvent] = {}
    selection: Mapping[str, Any] | None = None
    for event in events:
        if event.type == "TrajectoryRecorded":
            trajectories[str(event.data.get("trajectory_id"))] = event
        elif event.type == "TrainingDataSelected" and (
            selection_id is None or event.data.get("selection_id") == selection_id
        ):
            selection = event.data
    if selection is None:
        wanted = f"selection {selection_id!r}" if selection_id else "any selection"
        raise HermesFedError(f"no TrainingDataSelected event for {wanted} in the log")
    for item in selection.get("items", []):
        found = trajectories.get(str(item.get("trajectory_id")))
        if found is None or found.erased_fields:
            continue
        yield CuratedItem(dict(found.data), str(item.get("tier", "")),
                          float(item.get("weight", 1.0)))
