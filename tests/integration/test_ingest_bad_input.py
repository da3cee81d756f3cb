"""The node's bad-input corpus over real gRPC (issue 21, item 14).

Every field's type, range, depth and size limits, sent to a real ``hermes-fed node serve``
on 127.0.0.1 through the raw transport. Each case asserts the precise status code, a
message naming the field (never echoing the value, never longer than
``MAX_DETAIL_CHARS``), that nothing was written (the log head is unchanged) and that the
node still serves.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermes_fed.client import IngestClient, IngestError
from hermes_fed.client.transport import events_pb2, ingest_pb2
from tenant_node.ingest.validation import MAX_DETAIL_CHARS

from .ingest_node import TENANT, NodeProcess

pytestmark = pytest.mark.slow

BIG = 100_000  # characters: past gRPC's 8 KiB metadata limit if a message echoed it


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    workdir: Path = tmp_path_factory.mktemp("bad-input")
    process = NodeProcess(workdir, f"sqlite:///{workdir / 'acme.db'}", max_event_bytes=262144)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(node: NodeProcess) -> Iterator[IngestClient]:
    c = node.client()
    yield c
    c.transport.close()


def nested(depth: int, leaf: str = "1") -> str:
    """JSON text of ``depth`` objects nested in one another."""
    return '{"a":' * depth + leaf + "}" * depth


def env(type_: str = "SessionContinued", data: dict[str, Any] | str | None = None,
        **fields: Any) -> events_pb2.EventEnvelope:
    values: dict[str, Any] = {"event_id": str(uuid.uuid4()), "tenant_id": TENANT,
                              "stream_id": "session-bad", "type": type_}
    values.update(fields)
    if data is not None:
        values["data_json"] = (data if isinstance(data, str) else json.dumps(data)).encode()
    return events_pb2.EventEnvelope(**values)


def trajectory_data(arguments: str = '{"x": 1}', parameters: str = '{"type": "object"}',
                    **overrides: Any) -> str:
    """A TrajectoryRecorded's data as JSON text, with raw JSON for arguments/parameters."""
    head = json.dumps({"trajectory_id": "t-bad", "task": "q", "task_type": "k",
                       "final_response": "a", **overrides})[:-1]
    return (head + ', "messages": [{"role": "user", "content": "q"}, {"role": "assistant", '
            '"content": "", "tool_calls": [{"id": "c1", "name": "f", "arguments": '
            + arguments + '}]}], "tools": [{"name": "f", "description": "", "parameters": '
            + parameters + "}]}")


def typed(arguments_json: str = "{}", parameters_json: str = "{}",
          **fields: Any) -> events_pb2.EventEnvelope:
    trajectory = events_pb2.Trajectory(
        trajectory_id=fields.pop("trajectory_id", "t-typed"), task="q", task_type="k",
        final_response="a",
        messages=[events_pb2.TrajectoryMessage(role="user", content="q"),
                  events_pb2.TrajectoryMessage(role="assistant", tool_calls=[
                      events_pb2.ToolCall(id="c1", name="f", arguments_json=arguments_json)])],
        tools=[events_pb2.ToolSpec(name="f", parameters_json=parameters_json)])
    return events_pb2.EventEnvelope(
        event_id=str(uuid.uuid4()), tenant_id=TENANT, stream_id="session-bad",
        type="TrajectoryRecorded", trajectory=trajectory, **fields)


def batch(*envelopes: events_pb2.EventEnvelope) -> bytes:
    return bytes(ingest_pb2.AppendEventsRequest(events=list(envelopes)).SerializeToString())


D = "events[0].data"
# (case, request bytes, status, the message must contain this, the message must not)
CORPUS: list[tuple[str, bytes, str, str, str]] = [
    # --- types ---------------------------------------------------------------------------
    ("data is a list", batch(env(data="[1]")), "INVALID_ARGUMENT",
     "events[0].data_json: expected a JSON object, got list", ""),
    ("id of the wrong type", batch(env(data={"trajectory_id": 7})), "INVALID_ARGUMENT",
     f"{D}.trajectory_id: expected str, got int", ""),
    ("edit ratio as text", batch(env("OutputEdited", {"trajectory_id": "t", "edit_ratio": "0.5"})),
     "INVALID_ARGUMENT", f"{D}.edit_ratio: expected int|float, got str", ""),
    ("edit ratio as a boolean", batch(env("OutputEdited", {"trajectory_id": "t",
                                                           "edit_ratio": True})),
     "INVALID_ARGUMENT", f"{D}.edit_ratio: expected int|float, got bool", ""),
    ("edit ratio NaN", batch(env("OutputEdited", '{"trajectory_id": "t", "edit_ratio": NaN}')),
     "INVALID_ARGUMENT", f"{D}.edit_ratio: non-finite float", ""),
    ("an unknown field", batch(env(data={"trajectory_id": "t", "extra": 1})),
     "INVALID_ARGUMENT", f"{D}.extra: unknown field", ""),
    ("a lone surrogate in data", batch(env("ErrorReported",
                                           '{"trajectory_id": "t", "reason": "\\ud800"}')),
     "INVALID_ARGUMENT", f"{D}.reason: string is not valid UTF-8 (lone surrogate)", ""),
    ("a lone surrogate in metadata", batch(env(data={"trajectory_id": "t"},
                                               metadata_json=b'{"actor": "\\ud800"}')),
     "INVALID_ARGUMENT", "events[0].metadata_json.actor: string is not valid UTF-8", ""),
    ("an integer past 64 bits in metadata", batch(env(data={"trajectory_id": "t"},
                                                      metadata_json=b'{"n": 1' + b"0" * 30 + b"}")),
     "INVALID_ARGUMENT", "events[0].metadata_json.n: integer outside the 64-bit range", ""),
    ("an integer past 64 bits", batch(env("TrajectoryRecorded", trajectory_data(
        arguments='{"n": 123456789012345678901234567890}'))),
     "INVALID_ARGUMENT", "integer outside the 64-bit range", "1234567890"),
    # --- ranges -------------------------------------------------------------------------
    ("edit ratio below 0", batch(env("OutputEdited", {"trajectory_id": "t", "edit_ratio": -0.5})),
     "INVALID_ARGUMENT", f"{D}.edit_ratio: must be in [0, 1], got -0.5", ""),
    ("edit ratio above 1", batch(env("OutputEdited", {"trajectory_id": "t", "edit_ratio": 1.5})),
     "INVALID_ARGUMENT", f"{D}.edit_ratio: must be in [0, 1], got 1.5", ""),
    ("judge score of 7", batch(env("TrajectoryJudged", {"trajectory_id": "t", "judge": "j",
                                                        "score": 7})),
     "INVALID_ARGUMENT", f"{D}.score: must be in [0, 1], got 7", ""),
    ("judge score below 0", batch(env("TrajectoryJudged", {"trajectory_id": "t", "judge": "j",
                                                           "score": -0.01})),
     "INVALID_ARGUMENT", f"{D}.score: must be in [0, 1], got -0.01", ""),
    ("human label of 5", batch(env("HumanLabeled", {"trajectory_id": "t", "score": 5})),
     "INVALID_ARGUMENT", f"{D}.score: must be in [-1, 1], got 5", ""),
    ("human label of -1.5", batch(env("HumanLabeled", {"trajectory_id": "t", "score": -1.5})),
     "INVALID_ARGUMENT", f"{D}.score: must be in [-1, 1], got -1.5", ""),
    ("a curation over ingest", batch(env("TrajectoryCurated", {"trajectory_id": "t"})),
     "PERMISSION_DENIED", "events[0].type: TrajectoryCurated is written by the node itself", ""),
    # --- depth --------------------------------------------------------------------------
    ("data nested 300 levels", batch(env("TrajectoryRecorded", trajectory_data(
        arguments=nested(300)))),
     "INVALID_ARGUMENT", "nested deeper than 64 levels", ""),
    ("data nested 10,000 levels", batch(env("ErrorReported", nested(10_000))),
     "INVALID_ARGUMENT", "events[0].data_json: nested deeper than 64 levels", ""),
    ("tool parameters nested 1,000 levels", batch(env("TrajectoryRecorded", trajectory_data(
        parameters=nested(1_000)))),
     "INVALID_ARGUMENT", "events[0].data_json: nested deeper than 64 levels", ""),
    ("metadata nested 300 levels", batch(env(data={"trajectory_id": "t"},
                                             metadata_json=nested(300).encode())),
     "INVALID_ARGUMENT", "events[0].metadata_json: nested deeper than 64 levels", ""),
    ("metadata nested 10,000 levels", batch(env(data={"trajectory_id": "t"},
                                                metadata_json=nested(10_000).encode())),
     "INVALID_ARGUMENT", "events[0].metadata_json: nested deeper than 64 levels", ""),
    ("typed arguments nested 10,000 levels", batch(typed(arguments_json=nested(10_000))),
     "INVALID_ARGUMENT",
     "events[0].trajectory.messages[1].tool_calls[0].arguments_json: nested deeper than 64", ""),
    ("typed arguments nested 200 levels", batch(typed(arguments_json=nested(200))),
     "INVALID_ARGUMENT",
     "events[0].trajectory.messages[1].tool_calls[0].arguments_json: nested deeper than 64", ""),
    ("typed parameters nested 500 levels", batch(typed(parameters_json=nested(500))),
     "INVALID_ARGUMENT", "events[0].trajectory.tools[0].parameters_json: nested deeper", ""),
    # --- sizes: limits of the columns, and messages that never echo a value ----------------
    ("a 300-character stream id", batch(env(data={"trajectory_id": "t"},
                                            stream_id="session-" + "s" * 292)),
     "INVALID_ARGUMENT", "events[0].stream_id: longer than 200 characters", "sss"),
    ("a 300-character trajectory id", batch(env(data={"trajectory_id": "t" * 300})),
     "INVALID_ARGUMENT", f"{D}.trajectory_id: longer than 200 characters", "ttt"),
    ("a 300-character typed trajectory id", batch(typed(trajectory_id="t" * 300)),
     "INVALID_ARGUMENT", f"{D}.trajectory_id: longer than 200 characters", "ttt"),
    ("a 300-character task type", batch(env("TrajectoryRecorded", trajectory_data(
        task_type="k" * 300))),
     "INVALID_ARGUMENT", f"{D}.task_type: longer than 200 characters", "kkk"),
    ("a 200-character judge name", batch(env("TrajectoryJudged", {
        "trajectory_id": "t", "judge": "j" * 200, "score": 0.5})),
     "INVALID_ARGUMENT", f"{D}.judge: longer than 100 characters", "jjj"),
    ("a 100 kB event type", batch(env("T" * BIG, {"trajectory_id": "t"})),
     "INVALID_ARGUMENT", "events[0].type: unknown event type", "TTTT"),
    ("a 100 kB tenant id", batch(env(data={"trajectory_id": "t"}, tenant_id="g" * BIG)),
     "PERMISSION_DENIED", "events[0].tenant_id: this node serves tenant 'acme'", "gggg"),
    ("a 100 kB event id", batch(env(data={"trajectory_id": "t"}, event_id="e" * BIG)),
     "INVALID_ARGUMENT", "events[0].event_id: not a UUID", "eeee"),
    ("a 100 kB unknown key", batch(env(data={"trajectory_id": "t", "k" * BIG: 1})),
     "INVALID_ARGUMENT", "unknown field", "kkkk"),
    ("a 100 kB key deep in arguments", batch(env("TrajectoryRecorded", trajectory_data(
        arguments='{"' + "k" * BIG + '": 123456789012345678901234567890}'))),
     "INVALID_ARGUMENT", "integer outside the 64-bit range", "kkkk"),
    ("a 100 kB unknown message key", batch(env("TrajectoryRecorded", trajectory_data(
        ).replace('"role": "user"', '"role": "user", "' + "m" * BIG + '": 1'))),
     "INVALID_ARGUMENT", "unknown key", "mmmm"),
    ("a 100 kB subject", batch(env("SessionStarted", {"user_ref": "u", "model_version": "m"},
                                   subject="s" * BIG)),
     "INVALID_ARGUMENT", "events[0].subject: longer than 256 characters", "ssss"),
    ("an event over max_event_bytes", batch(env("ErrorReported", {
        "trajectory_id": "t", "reason": "r" * 300_000})),
     "RESOURCE_EXHAUSTED", "events[0]: ", "rrrr"),
]


@pytest.mark.parametrize(("case", "raw", "code", "expected", "never"), CORPUS,
                         ids=[c[0] for c in CORPUS])
def test_bad_input_gets_its_precise_status_and_writes_nothing(
        node: NodeProcess, client: IngestClient, case: str, raw: bytes, code: str,
        expected: str, never: str) -> None:
    # Prepare
    before = len(client.read_log())

    # Execute
    with pytest.raises(IngestError) as caught:
        client.transport.append_raw(raw)

    # Assert
    details = caught.value.details
    assert caught.value.code == code, (case, caught.value)
    assert expected in details, (case, details[:300])
    assert len(details) <= MAX_DETAIL_CHARS, (case, len(details))
    assert not never or never not in details, case
    assert len(client.read_log()) == before
    assert node.alive()


ASSIGN = [
    ("an arm with a bad weight",
     ingest_pb2.AssignVariantRequest(ab_test_id="ab", user_ref="u", arms=[
         ingest_pb2.Arm(name="arm-secret", weight=-1), ingest_pb2.Arm(name="b", weight=1)]),
     "INVALID_ARGUMENT", "arms[0]: weight must be finite and > 0, got -1", "arm-secret"),
    ("a 100 kB arm name",
     ingest_pb2.AssignVariantRequest(ab_test_id="ab", user_ref="u", arms=[
         ingest_pb2.Arm(name="a" * BIG, weight=1), ingest_pb2.Arm(name="b", weight=1)]),
     "INVALID_ARGUMENT", "arms[0].name: longer than 128 characters", "aaaa"),
    ("seventeen arms",
     ingest_pb2.AssignVariantRequest(ab_test_id="ab", user_ref="u", arms=[
         ingest_pb2.Arm(name=f"a{i}", weight=1) for i in range(17)]),
     "INVALID_ARGUMENT", "arms: an A/B test needs 2..16 arms, got 17", ""),
    ("a 300-character test id",
     ingest_pb2.AssignVariantRequest(ab_test_id="x" * 300, user_ref="u", arms=[
         ingest_pb2.Arm(name="a", weight=1), ingest_pb2.Arm(name="b", weight=1)]),
     "INVALID_ARGUMENT", "ab_test_id: longer than 128 characters", "xxx"),
    ("a 200-character arm name",
     ingest_pb2.AssignVariantRequest(ab_test_id="ab", user_ref="u", arms=[
         ingest_pb2.Arm(name="a" * 200, weight=1), ingest_pb2.Arm(name="b", weight=1)]),
     "INVALID_ARGUMENT", "arms[0].name: longer than 128 characters", "aaa"),
    ("a 100 kB user ref",
     ingest_pb2.AssignVariantRequest(ab_test_id="ab", user_ref="u" * BIG, arms=[
         ingest_pb2.Arm(name="a", weight=1), ingest_pb2.Arm(name="b", weight=1)]),
     "INVALID_ARGUMENT", "user_ref: longer than 256 characters", "uuuu"),
]


@pytest.mark.parametrize(("case", "request_", "code", "expected", "never"), ASSIGN,
                         ids=[c[0] for c in ASSIGN])
def test_bad_assignments_get_their_status_and_write_nothing(
        node: NodeProcess, client: IngestClient, case: str, request_: Any, code: str,
        expected: str, never: str) -> None:
    # Prepare
    before = len(client.read_log())

    # Execute
    with pytest.raises(IngestError) as caught:
        client.transport.assign_variant(request_)

    # Assert
    details = caught.value.details
    assert caught.value.code == code, (case, caught.value)
    assert expected in details, (case, details[:300])
    assert len(details) <= MAX_DETAIL_CHARS and (not never or never not in details)
    assert len(client.read_log()) == before


# Deepest nesting that lands, by hand: the event's JSON may nest 64 levels; arguments sit
# at level 6 (data, messages, a message, tool_calls, a call), parameters at level 4 (data,
# tools, a tool), metadata at level 1.
LIMITS = {"metadata": 64, "arguments": 59, "typed-arguments": 59, "parameters": 61,
          "typed-parameters": 61}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(LIMITS)), st.one_of(st.integers(1, 80), st.integers(1, 3000)))
def test_any_nesting_depth_anywhere_lands_or_is_invalid_never_internal(
        client: IngestClient, place: str, depth: int) -> None:
    # Prepare
    tid = f"t-{uuid.uuid4()}"
    if place == "metadata":
        envelope = env(data={"trajectory_id": "t"}, metadata_json=nested(depth).encode())
    elif place == "arguments":
        envelope = env("TrajectoryRecorded", trajectory_data(arguments=nested(depth),
                                                             trajectory_id=tid))
    elif place == "parameters":
        envelope = env("TrajectoryRecorded", trajectory_data(parameters=nested(depth),
                                                             trajectory_id=tid))
    elif place == "typed-arguments":
        envelope = typed(arguments_json=nested(depth), trajectory_id=tid)
    else:
        envelope = typed(parameters_json=nested(depth), trajectory_id=tid)
    before = len(client.read_log())

    # Execute
    try:
        client.transport.append_raw(batch(envelope))
        outcome = "OK"
    except IngestError as exc:
        outcome = exc.code
        assert "nested deeper than 64 levels" in exc.details, exc.details[:300]

    # Assert: never INTERNAL; the limit is the depth of the event's JSON
    assert outcome in ("OK", "INVALID_ARGUMENT")
    assert (outcome == "OK") == (depth <= LIMITS[place]), (place, depth, outcome)
    assert len(client.read_log()) == before + (outcome == "OK")
