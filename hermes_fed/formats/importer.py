"""Importing JSONL into a tenant's log, and exporting the curated training set.

Each good line becomes a session stream of two events, ``SessionStarted`` and
``TrajectoryRecorded``, appended through the store (whose gate is the redactor, so every
record is redacted before it reaches disk). Event ids are derived from the trajectory id, so
importing a file twice appends nothing the second time (invariant 3). Bad lines are
reported by number and skipped; a batch the store refuses *because of its data* (a schema
violation, a redaction failure, the node's INVALID_ARGUMENT or RESOURCE_EXHAUSTED) is
retried line by line so one bad record cannot sink its neighbours. Any other refusal (a
wrong token, a node or database that is down, a permission) is not about a line: the import
stops at once with :class:`ImportAborted`, which says how far it got.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hermes_fed.errors import (
    FormatError,
    HermesFedError,
    RedactionError,
    SchemaError,
    UnknownEventTypeError,
)
from hermes_fed.events import NewEvent, StoredEvent
from hermes_fed.events.session import SessionStarted, TrajectoryCurated, TrajectoryRecorded

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
        text = (f"{self.imported} imported, {self.duplicates} already present, "
                f"{len(self.bad_lines)} bad of {self.lines} lines")
        if self.bad_lines:
            numbers = [str(b.line) for b in self.bad_lines]
            shown = ", ".join(numbers[:20]) + (f", ... ({len(numbers) - 20} more)"
                                               if len(numbers) > 20 else "")
            text += f" (bad lines: {shown})"
        return text


class ImportAborted(HermesFedError):
    """The destination refused the import for a reason that is not about one line (a wrong
    token, a store or node that is down); ``report`` is what was done before it."""

    def __init__(self, line: int, cause: HermesFedError, report: ImportReport) -> None:
        super().__init__(f"import stopped at line {line}: {cause} ({report.imported} imported "
                         "before it; importing the file again is safe, its events are "
                         "idempotent)")
        self.line = line
        self.cause = cause
        self.report = report


# gRPC codes of the node that blame the request's data, hence one line of a batch.
_DATA_CODES = frozenset({"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"})


def about_the_data(exc: HermesFedError) -> bool:
    """Whether a refusal blames the events (retry the batch line by line) rather than the
    destination (stop the import)."""
    code = getattr(exc, "code", None)
    if isinstance(code, str):  # the node's answer over gRPC (hermes_fed.client.IngestError)
        return code in _DATA_CODES
    return isinstance(exc, SchemaError | UnknownEventTypeError | FormatError | RedactionError)


def _refusal(exc: HermesFedError) -> str:
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        return f"refused by the node: {exc}"
    return f"refused by the store: {type(exc).__name__}: {exc}"


@dataclass(frozen=True, slots=True)
class CuratedMark:
    """``node import --curated [SCORE]``: the deployer vouches for every trajectory of the
    file. Each gets a ``TrajectoryCurated`` event: it scores ``score``, or the
    ``[quality.curated] prior`` when None, until users react to it (DESIGN.md §5)."""

    score: float | None = None

    def __post_init__(self) -> None:
        score = self.score
        if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)
                                  or not -1.0 <= score <= 1.0):
            raise ValueError(f"curated score must be a number in [-1, 1], got {score!r}")


def trajectory_events(parsed: ParsedLine, *, source: str = "import",
                      curated: CuratedMark | None = None) -> list[NewEvent]:
    """The session events of one imported trajectory (ids deterministic per trajectory;
    a curation's id also holds its score, so re-importing with another score re-marks)."""
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
    events = [
        NewEvent(stream_id=stream_id, type=SessionStarted.TYPE, data=started,
                 event_id=uuid.uuid5(IMPORT_NAMESPACE, f"{stream_id}/SessionStarted"),
                 metadata=metadata, subject=user_ref),
        NewEvent(stream_id=stream_id, type=TrajectoryRecorded.TYPE, data=recorded,
                 event_id=uuid.uuid5(IMPORT_NAMESPACE, f"{stream_id}/TrajectoryRecorded"),
                 metadata=metadata, subject=user_ref),
    ]
    if curated is not None:
        data = {"trajectory_id": tid, "source": source, "score": curated.score}
        events.append(NewEvent(
            stream_id=stream_id, type=TrajectoryCurated.TYPE, data=data,
            event_id=uuid.uuid5(IMPORT_NAMESPACE, f"{stream_id}/TrajectoryCurated/"
                                                  f"{curated.score!r}"),
            metadata={"source": source, "line": parsed.line, "actor": "node.import"}))
    return events


def _append_group(
    append: Append, group: list[tuple[ParsedLine, list[NewEvent]]], bad: list[BadLine]
) -> tuple[int, int]:
    """Append a batch; when its data is refused, retry each line alone to find the bad one.

    A refusal that is not about the data propagates (the caller stops the import).
    """
    try:
        results = append([e for _, events in group for e in events])
    except HermesFedError as exc:
        if not about_the_data(exc):
            raise
        if len(group) == 1:
            bad.append(BadLine(group[0][0].line, _refusal(exc)))
            return 0, 0
        imported = duplicates = 0
        for item in group:
            i, d = _append_group(append, [item], bad)
            imported, duplicates = imported + i, duplicates + d
        return imported, duplicates
    # A trajectory counts as new when its TrajectoryRecorded event was written now.
    new = offset = 0
    for _, events in group:
        recorded = next(i for i, e in enumerate(events) if e.type == TrajectoryRecorded.TYPE)
        new += not results[offset + recorded].duplicate
        offset += len(events)
    return new, len(group) - new


def import_lines(
    lines: Iterable[bytes | str], fmt: str, append: Append, *, batch_size: int = 100,
    source: str = "import", progress: Callable[[int], None] | None = None,
    curated: CuratedMark | None = None,
) -> ImportReport:
    """Parse ``lines`` in ``fmt`` and append the good ones in batches of ``batch_size`` lines;
    with ``curated``, mark every trajectory curated (:class:`CuratedMark`).

    Raises :class:`ImportAborted` when the destination refuses for a reason that is not
    about a line (see :func:`about_the_data`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    bad: list[BadLine] = []
    group: list[tuple[ParsedLine, list[NewEvent]]] = []
    imported = duplicates = count = 0

    def flush() -> None:
        nonlocal imported, duplicates, group
        try:
            i, d = _append_group(append, group, bad)
        except HermesFedError as exc:
            done = ImportReport(count, imported, duplicates,
                                tuple(sorted(bad, key=lambda b: b.line)))
            raise ImportAborted(group[0][0].line, exc, done) from None
        imported, duplicates, group = imported + i, duplicates + d, []

    for item in parse_jsonl(lines, fmt):
        count = item.line
        if isinstance(item, BadLine):
            bad.append(item)
            continue
        tid = item.trajectory["trajectory_id"]
        if any(p.trajectory["trajectory_id"] == tid for p, _ in group):
            # A repeated id inside one transaction would collide with itself: flush first.
            flush()
        group.append((item, trajectory_events(item, source=source, curated=curated)))
        if len(group) >= batch_size:
            flush()
            if progress is not None:
                progress(count)
    if group:
        flush()
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
