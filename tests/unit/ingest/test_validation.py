"""The ingest contract for bad input, without a network (tenant_node.ingest.validation).

The same cases run over a real gRPC connection in tests/integration/test_ingest_daemon.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from protos.hermes_fed.v1 import events_pb2, ingest_pb2
from tenant_node.ingest.validation import IngestLimits, RejectedRequest, decode_batch

LIMITS = IngestLimits(tenant_id="acme", max_event_bytes=4096, max_batch_events=5)
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def envelope(**overrides: Any) -> events_pb2.EventEnvelope:
    fields: dict[str, Any] = {
        "event_id": str(uuid.uuid4()), "tenant_id": "acme", "stream_id": "session-1",
        "type": "OutputAccepted", "data_json": json.dumps({"trajectory_id": "t-1"}).encode(),
    }
    fields.update(overrides)
    return events_pb2.EventEnvelope(**fields)


def trajectory_envelope(edit: Callable[[dict[str, Any]], None]) -> events_pb2.EventEnvelope:
    data: dict[str, Any] = {
        "trajectory_id": "t-1", "task": "q", "task_type": "x", "final_response": "a",
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        "tools": [],
    }
    edit(data)
    return envelope(type="TrajectoryRecorded", data_json=json.dumps(data).encode())


def batch(*envelopes: events_pb2.EventEnvelope) -> ingest_pb2.AppendEventsRequest:
    return ingest_pb2.AppendEventsRequest(events=list(envelopes))


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.__setitem__(key, value)


CASES = [
    ("empty batch", batch(), INVALID, "events"),
    ("too many events", batch(*[envelope() for _ in range(6)]),
     grpc.StatusCode.RESOURCE_EXHAUSTED, "events"),
    ("oversized event", batch(envelope(), envelope(data_json=json.dumps(
        {"trajectory_id": "t" * 5000}).encode())), grpc.StatusCode.RESOURCE_EXHAUSTED, "events[1]"),
    ("missing event id", batch(envelope(event_id="")), INVALID, "events[0].event_id"),
    ("event id not a uuid", batch(envelope(event_id="nope")), INVALID, "events[0].event_id"),
    ("missing tenant", batch(envelope(tenant_id="")), INVALID, "events[0].tenant_id"),
    ("another tenant", batch(envelope(), envelope(tenant_id="globex")),
     grpc.StatusCode.PERMISSION_DENIED, "events[1].tenant_id"),
    ("missing stream", batch(envelope(stream_id="")), INVALID, "events[0].stream_id"),
    ("not a session stream", batch(envelope(stream_id="model-1")), INVALID,
     "events[0].stream_id"),
    ("missing type", batch(envelope(type="")), INVALID, "events[0].type"),
    ("unknown type", batch(envelope(type="Teleported")), INVALID, "events[0].type"),
    ("node-only type", batch(envelope(type="SubjectErased")), grpc.StatusCode.PERMISSION_DENIED,
     "events[0].type"),
    ("invalid utf-8 data", batch(envelope(data_json=b'{"trajectory_id": "\xff"}')), INVALID,
     "events[0].data_json"),
    ("data not json", batch(envelope(data_json=b"{nope")), INVALID, "events[0].data_json"),
    ("data not an object", batch(envelope(data_json=b"[1]")), INVALID, "events[0].data_json"),
    ("schema: wrong type", batch(envelope(data_json=b'{"trajectory_id": 5}')), INVALID,
     "events[0].data.trajectory_id"),
    ("schema: missing field", batch(envelope(data_json=b"{}")), INVALID,
     "events[0].data.trajectory_id"),
    ("schema: unknown field", batch(envelope(data_json=b'{"trajectory_id": "t", "x": 1}')),
     INVALID, "events[0].data.x"),
    ("schema: bad role", batch(trajectory_envelope(
        lambda d: d["messages"][0].__setitem__("role", "robot"))), INVALID,
     "events[0].data.messages[0].role"),
    ("schema: orphan tool result", batch(trajectory_envelope(_set("messages", [
        {"role": "tool", "tool_call_id": "c9", "content": "1"}]))), INVALID,
     "events[0].data.messages[0].tool_call_id"),
    ("metadata not json", batch(envelope(metadata_json=b"\x00")), INVALID,
     "events[0].metadata_json"),
    ("repeated id", batch(envelope(event_id=str(uuid.UUID(int=1))),
                          envelope(event_id=str(uuid.UUID(int=1)))), INVALID,
     "events[1].event_id"),
]


@pytest.mark.parametrize(("name", "request_", "code", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_batches_are_rejected_naming_the_field(
    name: str, request_: ingest_pb2.AppendEventsRequest, code: grpc.StatusCode, field: str
) -> None:
    # Execute
    with pytest.raises(RejectedRequest) as caught:
        decode_batch(request_, LIMITS)

    # Assert
    assert caught.value.code == code
    assert caught.value.field == field
    assert caught.value.reason.isidentifier() and caught.value.reason.islower()


def test_typed_trajectory_becomes_the_shared_shape() -> None:
    # Prepare
    trajectory = events_pb2.Trajectory(
        trajectory_id="t-9", task="2+3?", task_type="arithmetic", final_response="5",
        messages=[
            events_pb2.TrajectoryMessage(role="user", content="2+3?"),
            events_pb2.TrajectoryMessage(role="assistant", tool_calls=[events_pb2.ToolCall(
                id="c1", name="calc", arguments_json='{"expression": "2+3", "n": 2}')]),
            events_pb2.TrajectoryMessage(role="tool", tool_call_id="c1", name="calc", content="5"),
            events_pb2.TrajectoryMessage(role="assistant", content="5"),
        ],
        tools=[events_pb2.ToolSpec(name="calc", parameters_json='{"type": "object"}')],
    )
    request = batch(envelope(type="TrajectoryRecorded", data_json=None, trajectory=trajectory,
                             subject="u-1"))

    # Execute
    (event,), expected = decode_batch(request, LIMITS)

    # Assert
    assert expected == {}
    assert event.subject == "u-1"
    assert event.data["messages"][1]["tool_calls"] == [
        {"id": "c1", "name": "calc", "arguments": {"expression": "2+3", "n": 2}}]
    assert event.data["messages"][2] == {"role": "tool", "content": "5", "tool_call_id": "c1",
                                         "name": "calc"}
    assert event.data["tools"] == [{"name": "calc", "description": "",
                                    "parameters": {"type": "object"}}]


def test_bad_tool_arguments_name_the_nested_field() -> None:
    # Prepare
    trajectory = events_pb2.Trajectory(messages=[events_pb2.TrajectoryMessage(
        role="assistant", tool_calls=[events_pb2.ToolCall(id="c", name="f",
                                                          arguments_json="[1]")])])

    # Execute
    with pytest.raises(RejectedRequest) as caught:
        decode_batch(batch(envelope(type="TrajectoryRecorded", trajectory=trajectory)), LIMITS)

    # Assert
    assert caught.value.field == "events[0].trajectory.messages[0].tool_calls[0].arguments_json"


def test_session_started_subject_defaults_to_its_user() -> None:
    # Execute
    (event,), _ = decode_batch(batch(envelope(
        type="SessionStarted", data_json=b'{"user_ref": "u-5", "model_version": "m"}')), LIMITS)

    # Assert
    assert event.subject == "u-5"
    assert event.data["variant"] is None
