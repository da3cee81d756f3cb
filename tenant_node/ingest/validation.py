"""The ingest contract for bad input: envelope protos -> :class:`NewEvent` or a rejection.

Every check names the field (``events[3].data.messages[2].role``) and the kind of problem,
never the value (it may be personal). A batch is rejected as a whole: nothing from it is
written. Codes are used as gRPC means them:

* ``INVALID_ARGUMENT``: malformed protobuf, invalid UTF-8, missing ids, unknown event type,
  schema violation, a repeated event id inside one batch;
* ``PERMISSION_DENIED``: another tenant's id, a type that may not be appended over ingest;
* ``RESOURCE_EXHAUSTED``: an event over ``max_event_bytes``, a batch over ``max_batch_events``.

Limits beyond the protobuf types: JSON (data, metadata, tool arguments and parameters)
nests at most ``MAX_DEPTH`` (64) levels, checked as it is parsed (a RecursionError of the
parser or orjson's 255-level encoder limit used to answer INTERNAL); numbers stay in their
scales and ids and names within their columns (the catalog's ``Range``/``MaxLen``); a
stream id has at most 200 characters, a subject 256. Every message is at most
:data:`MAX_DETAIL_CHARS` long and quotes no value: an id or key is named by its field, and
a value shown at all (a tenant or type name) is cut to :data:`SHOWN_CHARS`, so an answer
never outgrows gRPC's metadata limit (a 100 kB echo made the client see only
"received metadata size exceeds hard limit").
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import grpc

from hermes_fed.errors import HermesFedError, SchemaError, UnknownEventTypeError
from hermes_fed.events import DEFAULT_CATALOG, Catalog, NewEvent, utcnow
from hermes_fed.events.codec import MAX_DEPTH, json_depth, json_problem
from hermes_fed.formats.trajectory import trajectory_problem
from protos.hermes_fed.v1 import events_pb2, ingest_pb2

# Types a client may append over ingest: the session stream's facts. Training, coordinator
# and erasure events are written by the node itself, never by an agent.
INGEST_TYPES = frozenset({
    "SessionStarted", "TrajectoryRecorded", "OutputAccepted", "RetryRequested",
    "OutputEdited", "SessionContinued", "ErrorReported", "SessionEnded",
    "TrajectoryJudged", "HumanLabeled",
})
SESSION_PREFIX = "session-"
MAX_DETAIL_CHARS = 512  # longest status message (gRPC carries it in a metadata header)
SHOWN_CHARS = 40  # longest value a message quotes (tenant ids, event type names)
MAX_STREAM_ID = 200  # the events table's stream_id column
MAX_SUBJECT = 256  # a subject is a user_ref (SessionStarted.user_ref's limit)


def shown(value: str) -> str:
    """``value`` quoted for a message, cut to :data:`SHOWN_CHARS` (ids, never user text)."""
    if len(value) <= SHOWN_CHARS and value.isprintable():
        return repr(value)
    return f"<{len(value)} characters>"


def bounded(message: str) -> str:
    """``message`` cut to :data:`MAX_DETAIL_CHARS` (the last guard before gRPC sends it)."""
    if len(message) <= MAX_DETAIL_CHARS:
        return message
    return message[:MAX_DETAIL_CHARS - 20] + " ... (message cut)"


class RejectedRequest(HermesFedError):
    """A request broke the ingest contract; ``code`` is the gRPC status to answer with."""

    def __init__(self, code: grpc.StatusCode, field: str, problem: str, reason: str = "") -> None:
        super().__init__(f"{field}: {problem}")
        self.code = code
        self.field = field
        self.problem = problem
        #: The metrics label (``hermes_node_events_rejected{reason=...}``): a fixed word.
        self.reason = reason or str(code.name).lower()


def _invalid(field: str, problem: str, reason: str) -> RejectedRequest:
    return RejectedRequest(grpc.StatusCode.INVALID_ARGUMENT, field, problem, reason)


@dataclass(frozen=True, slots=True)
class IngestLimits:
    tenant_id: str
    max_event_bytes: int
    max_batch_events: int


def _json_object(raw: bytes, field: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(field, f"invalid UTF-8 at byte {exc.start}", "invalid_utf8") from None
    try:
        value = json.loads(text)
    except RecursionError:  # deeper than the parser's stack: far past MAX_DEPTH
        raise _invalid(field, f"nested deeper than {MAX_DEPTH} levels", "too_deep") from None
    except ValueError:
        raise _invalid(field, "not valid JSON", "invalid_json") from None
    if not isinstance(value, dict):
        raise _invalid(field, f"expected a JSON object, got {type(value).__name__}",
                       "invalid_json")
    if json_depth(value) > MAX_DEPTH:
        raise _invalid(field, f"nested deeper than {MAX_DEPTH} levels", "too_deep")
    return value


def trajectory_data(trajectory: events_pb2.Trajectory, field: str) -> dict[str, Any]:
    """The typed ``Trajectory`` message as the CONTRIBUTING.md trajectory dict."""
    messages = []
    for i, turn in enumerate(trajectory.messages):
        message: dict[str, Any] = {"role": turn.role, "content": turn.content}
        if turn.tool_calls:
            message["tool_calls"] = [
                {"id": call.id, "name": call.name,
                 "arguments": _json_object(
                     (call.arguments_json or "{}").encode(),
                     f"{field}.messages[{i}].tool_calls[{k}].arguments_json")}
                for k, call in enumerate(turn.tool_calls)
            ]
        if turn.tool_call_id:
            message["tool_call_id"] = turn.tool_call_id
        if turn.name:
            message["name"] = turn.name
        messages.append(message)
    tools = [
        {"name": tool.name, "description": tool.description,
         "parameters": _json_object((tool.parameters_json or "{}").encode(),
                                    f"{field}.tools[{k}].parameters_json")}
        for k, tool in enumerate(trajectory.tools)
    ]
    return {
        "trajectory_id": trajectory.trajectory_id, "task": trajectory.task,
        "task_type": trajectory.task_type, "messages": messages, "tools": tools,
        "final_response": trajectory.final_response,
    }


def _event(
    envelope: events_pb2.EventEnvelope, field: str, limits: IngestLimits, catalog: Catalog
) -> NewEvent:
    size = envelope.ByteSize()
    if size > limits.max_event_bytes:
        raise RejectedRequest(
            grpc.StatusCode.RESOURCE_EXHAUSTED, field,
            f"{size} bytes exceeds max_event_bytes={limits.max_event_bytes}", "oversized_event",
        )
    for name in ("event_id", "tenant_id", "stream_id", "type"):
        if not getattr(envelope, name):
            raise _invalid(f"{field}.{name}", "required", "missing_id")
    try:
        event_id = uuid.UUID(envelope.event_id)
    except ValueError:
        raise _invalid(f"{field}.event_id", "not a UUID", "bad_id") from None
    if envelope.tenant_id != limits.tenant_id:
        raise RejectedRequest(
            grpc.StatusCode.PERMISSION_DENIED, f"{field}.tenant_id",
            f"this node serves tenant {shown(limits.tenant_id)}, not "
            f"{shown(envelope.tenant_id)}", "wrong_tenant",
        )
    try:
        schema = catalog.schema(envelope.type)
    except UnknownEventTypeError:
        raise _invalid(f"{field}.type", f"unknown event type {shown(envelope.type)}",
                       "unknown_event_type") from None
    if envelope.type not in INGEST_TYPES:
        raise RejectedRequest(
            grpc.StatusCode.PERMISSION_DENIED, f"{field}.type",
            f"{envelope.type} is written by the node itself, not over ingest", "forbidden_type",
        )
    if not envelope.stream_id.startswith(SESSION_PREFIX) or envelope.stream_id == SESSION_PREFIX:
        raise _invalid(f"{field}.stream_id", f"expected '{SESSION_PREFIX}<id>'", "bad_stream")
    if len(envelope.stream_id) > MAX_STREAM_ID:
        raise _invalid(f"{field}.stream_id", f"longer than {MAX_STREAM_ID} characters "
                                             f"({len(envelope.stream_id)})", "too_long")
    if len(envelope.subject) > MAX_SUBJECT:
        raise _invalid(f"{field}.subject", f"longer than {MAX_SUBJECT} characters "
                                           f"({len(envelope.subject)})", "too_long")
    payload = envelope.WhichOneof("payload")
    if payload == "trajectory":
        if envelope.type != "TrajectoryRecorded":
            raise _invalid(f"{field}.trajectory", "only TrajectoryRecorded carries a trajectory",
                           "schema_violation")
        data = trajectory_data(envelope.trajectory, f"{field}.trajectory")
    elif payload == "data_json":
        data = _json_object(envelope.data_json, f"{field}.data_json")
    else:
        data = {}
    try:
        data = schema.validate(data)
    except SchemaError as exc:
        # A nested problem already starts with its path from the field ("messages[1]...").
        path, sep, what = exc.problem.rpartition(": ")
        if not (sep and path.startswith(exc.field)):
            path, what = exc.field, exc.problem
        raise _invalid(f"{field}.data.{path}", what, "schema_violation") from None
    if envelope.type == "TrajectoryRecorded":
        problem = trajectory_problem(data)
        if problem:
            path, _, what = problem.partition(": ")
            raise _invalid(f"{field}.data.{path}", what, "schema_violation")
    metadata = _json_object(envelope.metadata_json, f"{field}.metadata_json") if (
        envelope.metadata_json) else {}
    problem = json_problem(metadata)
    if problem:  # a lone surrogate, a 70-bit integer: the store could not encode it
        path, _, what = problem.rpartition(": ")
        raise _invalid(f"{field}.metadata_json" + ("" if path == "<root>" else f".{path}"),
                       what, "schema_violation")
    occurred_at = utcnow()
    if envelope.HasField("occurred_at"):
        try:
            occurred_at = envelope.occurred_at.ToDatetime(tzinfo=UTC)
        except (ValueError, OverflowError):
            raise _invalid(f"{field}.occurred_at", "out of range", "schema_violation") from None
    subject = envelope.subject or None
    if envelope.type == "SessionStarted":
        subject = subject or data["user_ref"]
    return NewEvent(
        stream_id=envelope.stream_id, type=envelope.type, data=data, event_id=event_id,
        metadata=metadata, occurred_at=occurred_at, subject=subject,
    )


def decode_batch(
    request: ingest_pb2.AppendEventsRequest,
    limits: IngestLimits,
    catalog: Catalog = DEFAULT_CATALOG,
) -> tuple[list[NewEvent], dict[str, int]]:
    """Check a batch against the ingest contract; return its events and expected versions.

    Raises :class:`RejectedRequest` on the first problem (the whole batch is refused).
    """
    if not request.events:
        raise _invalid("events", "empty batch", "empty_batch")
    if len(request.events) > limits.max_batch_events:
        raise RejectedRequest(
            grpc.StatusCode.RESOURCE_EXHAUSTED, "events",
            f"{len(request.events)} events exceeds max_batch_events={limits.max_batch_events}",
            "batch_too_large",
        )
    events: list[NewEvent] = []
    first_index: dict[uuid.UUID, int] = {}
    for index, envelope in enumerate(request.events):
        event = _event(envelope, f"events[{index}]", limits, catalog)
        if event.event_id in first_index:
            raise _invalid(f"events[{index}].event_id",
                           f"repeats events[{first_index[event.event_id]}] in the same batch",
                           "repeated_id")
        first_index[event.event_id] = index
        events.append(event)
    expected: dict[str, int] = {}
    for stream_id, version in request.expected_versions.items():
        if not stream_id or version < 0:
            raise _invalid("expected_versions", "stream ids must be non-empty, versions >= 0",
                           "bad_expected_versions")
        expected[stream_id] = int(version)
    return events, expected

