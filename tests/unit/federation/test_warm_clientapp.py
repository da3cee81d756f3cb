"""The warm ClientApp worker's task heartbeat: a rejection must not stop the worker."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import FrameType

import httpx
import pytest
from flwr.proto.runtime_pb2 import SendTaskHeartbeatResponse
from flwr.supercore.heartbeat import make_task_heartbeat_fn_http

from tenant_node.flower.warm_clientapp import task_heartbeat_fn


class _Runtime:
    """The one Runtime API call a heartbeat makes, answered as the SuperNode would."""

    def __init__(self, success: bool) -> None:
        self.success = success
        self.calls = 0

    def SendTaskHeartbeat(self, request: object) -> SendTaskHeartbeatResponse:
        self.calls += 1
        return SendTaskHeartbeatResponse(success=self.success)


@pytest.fixture
def sigints() -> Iterator[list[int]]:
    seen: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGINT, record)
    yield seen
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("success", [True, False])
def test_heartbeat_never_signals_the_worker(sigints: list[int], success: bool) -> None:
    # Prepare
    runtime = _Runtime(success)
    # Execute
    ok = task_heartbeat_fn(runtime)()
    # Assert: answered (no retry loop), and no SIGINT, which would stop the serve loop
    assert ok is True and runtime.calls == 1
    assert sigints == []


def test_flowers_own_heartbeat_signals_on_rejection(sigints: list[int]) -> None:
    # The behaviour the worker's heartbeat exists to avoid (pinned flwr 1.42).
    make_task_heartbeat_fn_http(_Runtime(False))()  # type: ignore[arg-type]
    assert sigints == [signal.SIGINT]


class _Failing(_Runtime):
    """A Runtime API that answers one HTTP error status, then succeeds."""

    def __init__(self, status: int) -> None:
        super().__init__(True)
        self.status = status

    def SendTaskHeartbeat(self, request: object) -> SendTaskHeartbeatResponse:
        self.calls += 1
        if self.calls == 1:
            req = httpx.Request("POST", "http://127.0.0.1/v1/runtime/send-task-heartbeat")
            raise httpx.HTTPStatusError("locked", request=req,
                                        response=httpx.Response(self.status, request=req))
        return SendTaskHeartbeatResponse(success=True)


@pytest.mark.parametrize("status", [500, 503])
def test_an_http_error_is_a_missed_beat_to_retry_not_an_exception(status: int) -> None:
    # Prepare: Flower's own function raises on a 500, which ends its heartbeat thread.
    beat = task_heartbeat_fn(_Failing(status))
    # Execute
    first, second = beat(), beat()
    # Assert
    assert (first, second) == (False, True)
    if status == 500:
        with pytest.raises(httpx.HTTPStatusError):
            make_task_heartbeat_fn_http(_Failing(status))()  # type: ignore[arg-type]
