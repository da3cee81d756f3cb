"""Fuzzing the daemon over gRPC: random bytes and random well-formed messages.

Whatever arrives, the node answers with a client-error status (never INTERNAL/UNKNOWN) or
appends, stays SERVING, and its log still verifies.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermes_fed.client import IngestClient, IngestError
from hermes_fed.client.transport import events_pb2, ingest_pb2
from hermes_fed.events import DEFAULT_CATALOG

from .ingest_node import TENANT, NodeProcess

pytestmark = pytest.mark.slow

CLIENT_ERRORS = {"INVALID_ARGUMENT", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED"}
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    process = NodeProcess(workdir, f"sqlite:///{workdir / 'acme.db'}", max_event_bytes=4096)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(node: NodeProcess) -> Iterator[IngestClient]:
    c = node.client()
    yield c
    c.transport.close()


def _outcome(call: Any) -> str:
    """'OK', or the gRPC status name the daemon answered with."""
    try:
        call()
    except IngestError as exc:
        return str(exc.code)
    except grpc.RpcError as exc:  # the raw streaming read is not wrapped by the transport
        return str(exc.code().name)
    return "OK"


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_get_client_errors(client: IngestClient, data: bytes) -> None:
    t = client.transport
    outcomes = [
        _outcome(lambda: t.append_raw(data)),
        _outcome(lambda: t._call(t._assign, data)),
        _outcome(lambda: list(t._read(data, timeout=10, metadata=t._metadata))),
    ]
    # Random bytes are answered with a client error (or accepted), never INTERNAL/UNKNOWN.
    assert set(outcomes) <= {"OK", *CLIENT_ERRORS}, outcomes


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=8,
)
types = st.sampled_from([*DEFAULT_CATALOG.types(), "Teleported", ""])
messages = st.builds(
    events_pb2.TrajectoryMessage,
    role=st.sampled_from(["user", "assistant", "tool", "system", "robot"]),
    content=st.text(max_size=40), tool_call_id=st.sampled_from(["", "c1"]),
    tool_calls=st.lists(st.builds(events_pb2.ToolCall, id=st.sampled_from(["c1", ""]),
                                  name=st.text(max_size=5),
                                  arguments_json=st.sampled_from(["{}", "[1]", "{bad", ""])),
                        max_size=2),
)


@st.composite
def envelopes(draw: st.DrawFn) -> events_pb2.EventEnvelope:

    fields: dict[str, Any] = {
        "event_id": draw(st.one_of(st.builds(lambda: str(uuid.uuid4())), st.text(max_size=10))),
        "tenant_id": draw(st.sampled_from([TENANT, TENANT, "globex", ""])),
        "stream_id": draw(st.one_of(st.just("session-fuzz"), st.text(max_size=12))),
        "type": draw(types),
        "subject": draw(st.sampled_from(["", "user-1"])),
    }
    payload = draw(st.sampled_from(["json", "bytes", "trajectory", "none"]))
    if payload == "json":
        fields["data_json"] = json.dumps(draw(st.dictionaries(
            st.sampled_from(["trajectory_id", "user_ref", "model_version", "edit_ratio",
                             "reason", "score", "judge", "x"]), json_values, max_size=4))
        ).encode()
    elif payload == "bytes":
        fields["data_json"] = draw(st.binary(max_size=40))
    elif payload == "trajectory":
        fields["trajectory"] = events_pb2.Trajectory(
            trajectory_id=draw(st.text(max_size=5)), task=draw(st.text(max_size=20)),
            messages=draw(st.lists(messages, max_size=3)))
    return events_pb2.EventEnvelope(**fields)


valid_envelopes = st.builds(
    lambda tid, text: events_pb2.EventEnvelope(
        event_id=str(uuid.uuid4()), tenant_id=TENANT, stream_id="session-fuzz-ok",
        type="ErrorReported",
        data_json=json.dumps({"trajectory_id": tid, "reason": text}).encode()),
    st.text(min_size=1, max_size=10), st.text(max_size=200))


@FUZZ
@given(st.lists(st.one_of(envelopes(), valid_envelopes), max_size=4))
def test_random_well_formed_messages_get_client_errors_or_land(
    client: IngestClient, batch: list[events_pb2.EventEnvelope]
) -> None:
    raw = ingest_pb2.AppendEventsRequest(events=batch).SerializeToString()
    outcome = _outcome(lambda: client.transport.append_raw(raw))
    assert outcome == "OK" or outcome in CLIENT_ERRORS, outcome


def test_after_the_fuzz_the_node_serves_and_the_log_verifies(
    node: NodeProcess, client: IngestClient
) -> None:
    # Execute
    serving = client.transport.serving()
    with node.open_store() as store:
        report = store.verify()

    # Assert
    assert node.alive() and serving
    assert report.ok, str(report)
    assert "event=append_failed" not in node.log()
    assert report.head > 0  # the fuzz reached the append path, not only the rejections
