"""The client SDK: local checks, retry with back-off against a real in-process gRPC server."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hermes_fed.client import IngestClient, IngestError, NodeTransport, RetryPolicy
from hermes_fed.client.transport import ingest_pb2
from hermes_fed.errors import SchemaError, UnknownEventTypeError
from hermes_fed.events import NewEvent

TOKEN = "t" * 20
FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.001, max_backoff_s=0.002, timeout_s=2.0)


class FlakyNode:
    """A real gRPC server whose AppendEvents fails ``failures`` times with ``code`` first."""

    def __init__(self, failures: int, code: grpc.StatusCode) -> None:
        self.failures = failures
        self.code = code
        self.calls: list[bytes] = []
        self.metadata: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def append(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.calls.append(raw)
            self.metadata.append(dict(context.invocation_metadata()))
            fail = len(self.calls) <= self.failures
        if fail:
            context.abort(self.code, "injected")
        request = ingest_pb2.AppendEventsRequest.FromString(raw)
        return bytes(ingest_pb2.AppendEventsResponse(results=[
            ingest_pb2.AppendResult(event_id=e.event_id, position=i + 1, stream_version=i + 1)
            for i, e in enumerate(request.events)]).SerializeToString())


@pytest.fixture
def flaky(request: pytest.FixtureRequest) -> Iterator[tuple[FlakyNode, str]]:
    failures, code = request.param
    node = FlakyNode(failures, code)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "hermes_fed.v1.IngestService",
        {"AppendEvents": grpc.unary_unary_rpc_method_handler(node.append)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield node, f"127.0.0.1:{port}"
    server.stop(None)


def _client(target: str, **kw: Any) -> IngestClient:
    sleeps: list[float] = []
    transport = NodeTransport(target, TOKEN, retry=FAST, sleep=sleeps.append, seed=1)
    client = IngestClient(target, tenant_id="acme", token=TOKEN, transport=transport, **kw)
    client.sleeps = sleeps  # type: ignore[attr-defined]
    return client


@pytest.mark.parametrize("flaky", [(2, grpc.StatusCode.UNAVAILABLE)], indirect=True)
def test_transient_failures_are_retried_with_the_same_event_ids(
    flaky: tuple[FlakyNode, str],
) -> None:
    # Prepare
    node, target = flaky
    client = _client(target, batch_size=10)
    session = client.session("u-1", "m1", session_id="s1")
    tid = session.trajectory(task="q", messages=[{"role": "user", "content": "q"},
                                                 {"role": "assistant", "content": "a"}])
    session.accepted(tid)

    # Execute
    results = client.flush()

    # Assert
    assert len(node.calls) == 3 and node.calls[0] == node.calls[2]  # same bytes, same ids
    assert [r.position for r in results] == [1, 2, 3]
    assert len(client.sleeps) == 2  # type: ignore[attr-defined]
    assert node.metadata[0]["authorization"] == f"Bearer {TOKEN}"
    assert client.pending == 0


@pytest.mark.parametrize("flaky", [(99, grpc.StatusCode.UNAVAILABLE)], indirect=True)
def test_events_stay_buffered_when_retries_run_out(flaky: tuple[FlakyNode, str]) -> None:
    # Prepare
    node, target = flaky
    client = _client(target, batch_size=10)
    client.session("u-1", "m1").end()

    # Execute
    with pytest.raises(IngestError) as caught:
        client.flush()

    # Assert
    assert caught.value.code == "UNAVAILABLE" and caught.value.attempts == FAST.max_attempts
    assert len(node.calls) == FAST.max_attempts
    assert client.pending == 2


@pytest.mark.parametrize("flaky", [(1, grpc.StatusCode.INVALID_ARGUMENT)], indirect=True)
def test_rejections_are_not_retried(flaky: tuple[FlakyNode, str]) -> None:
    # Prepare
    node, target = flaky
    client = _client(target, batch_size=10)
    client.session("u-1", "m1")

    # Execute
    with pytest.raises(IngestError) as caught:
        client.flush()

    # Assert
    assert caught.value.code == "INVALID_ARGUMENT" and len(node.calls) == 1
    assert client.pending == 0


@pytest.mark.parametrize("flaky", [(0, grpc.StatusCode.OK)], indirect=True)
def test_batches_are_sent_when_full(flaky: tuple[FlakyNode, str]) -> None:
    # Prepare
    node, target = flaky
    client = _client(target, batch_size=3)
    session = client.session("u-1", "m1")

    # Execute
    for _ in range(4):
        session.continued("t-1")

    # Assert: 5 events buffered in total, one batch of 3 went out, 2 wait for flush.
    assert len(node.calls) == 1 and client.pending == 2
    client.close()
    assert len(node.calls) == 2 and client.pending == 0


@pytest.mark.parametrize("flaky", [(0, grpc.StatusCode.OK)], indirect=True)
def test_a_partial_batch_is_sent_after_max_delay(flaky: tuple[FlakyNode, str]) -> None:
    # Prepare
    node, target = flaky
    transport = NodeTransport(target, TOKEN, retry=FAST)
    client = IngestClient(target, tenant_id="acme", token=TOKEN, transport=transport,
                          batch_size=100, max_delay_s=0.02)

    # Execute: one event, far below the batch size; poll until the flusher sent it.
    client.session("u-1", "m1")
    deadline = time.monotonic() + 10
    while not node.calls and time.monotonic() < deadline:
        time.sleep(0.01)

    # Assert
    assert len(node.calls) == 1 and client.pending == 0
    client.close()
    assert len(node.calls) == 1


def test_bad_events_fail_at_the_call_site() -> None:
    # Prepare
    client = IngestClient("127.0.0.1:9", tenant_id="acme", token=TOKEN)
    session = client.session("u-1", "m1")

    # Execute / Assert
    with pytest.raises(SchemaError, match=r"messages\[0\].role"):
        session.trajectory(task="q", messages=[{"role": "bot", "content": "x"}])
    with pytest.raises(ValueError, match="edit_ratio"):
        session.edited("t-1", 1.5)
    with pytest.raises(UnknownEventTypeError):
        client.enqueue(NewEvent(stream_id="session-1", type="Nope", data={}))
    assert client.pending == 1  # only SessionStarted


def test_session_events_are_time_ordered_uuid7() -> None:
    # Prepare
    client = IngestClient("127.0.0.1:9", tenant_id="acme", token=TOKEN, batch_size=100)
    session = client.session("u-1", "m1")

    # Execute
    for _ in range(20):
        session.continued("t-1")

    # Assert
    ids = [e.event_id for e in client._buffer]
    assert all(i.version == 7 for i in ids)
    assert [i.bytes[:6] for i in ids] == sorted(i.bytes[:6] for i in ids)


@given(st.integers(1, 30), st.integers(0, 2**32))
def test_backoff_is_full_jitter_under_the_cap(attempt: int, seed: int) -> None:
    # Prepare
    policy = RetryPolicy(initial_backoff_s=0.05, max_backoff_s=2.0)

    # Execute
    delay = policy.backoff(attempt, random.Random(seed))

    # Assert
    assert 0.0 <= delay <= min(2.0, 0.05 * 2 ** (attempt - 1))


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"initial_backoff_s": 0.0}, {"initial_backoff_s": 3.0},
     {"timeout_s": 0.0}],
)
def test_bad_retry_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
