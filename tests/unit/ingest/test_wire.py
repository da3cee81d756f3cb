"""Naming the field of a request that does not parse (tenant_node.ingest.wire)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protos.hermes_fed.v1 import events_pb2, ingest_pb2
from tenant_node.ingest.wire import WireProblem, locate_wire_problem, parse_request

GOOD = ingest_pb2.AppendEventsRequest(events=[
    events_pb2.EventEnvelope(event_id="e0", stream_id="session-a"),
    events_pb2.EventEnvelope(
        event_id="e1", stream_id="session-bcd",
        trajectory=events_pb2.Trajectory(messages=[
            events_pb2.TrajectoryMessage(role="user", content="hello"),
            events_pb2.TrajectoryMessage(role="assistant", content="world",
                                         tool_calls=[events_pb2.ToolCall(name="calcx")]),
        ])),
], expected_versions={"session-a": 3}).SerializeToString()


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [
        (GOOD.replace(b"session-bcd", b"session-b\xffd"), "events[1].stream_id", "invalid UTF-8"),
        (GOOD.replace(b"hello", b"hel\xc3o"), "events[1].trajectory.messages[0].content",
         "invalid UTF-8"),
        (GOOD.replace(b"calcx", b"calc\xfe"),
         "events[1].trajectory.messages[1].tool_calls[0].name", "invalid UTF-8"),
        (GOOD.replace(b"session-a", b"session-\x80"), "events[0].stream_id", "invalid UTF-8"),
        (b"\xff\xff\xff", "request", "truncated"),
        (GOOD[:-2], "expected_versions[0]", "truncated"),
        (b"\x0a\x05abc", "events[0]", "truncated"),
        (b"\x0b", "events[0]", "wire type 3"),
    ],
)
def test_parse_failure_names_the_field(data: bytes, field: str, problem: str) -> None:
    # Execute
    with pytest.raises(WireProblem) as caught:
        parse_request(ingest_pb2.AppendEventsRequest, data)

    # Assert
    assert caught.value.field == field
    assert problem in caught.value.problem


def test_good_bytes_parse() -> None:
    # Execute
    request = parse_request(ingest_pb2.AppendEventsRequest, GOOD)

    # Assert
    assert [e.event_id for e in request.events] == ["e0", "e1"]


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_parse_or_raise_wire_problem(data: bytes) -> None:
    # Execute / Assert: nothing but WireProblem escapes, and the locator never crashes.
    try:
        parse_request(ingest_pb2.AppendEventsRequest, data)
    except WireProblem as exc:
        assert exc.field
    assert locate_wire_problem(ingest_pb2.AppendEventsRequest.DESCRIPTOR, data)
