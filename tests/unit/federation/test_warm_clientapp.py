"""The warm ClientApp worker's task heartbeat: a rejection must not stop the worker."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import FrameType

import pytest
from flwr.proto.runtime_pb2 import SendTaskHeartbeatResponse
from flwr.supercore.heartbeat import make_task_heartbeat_fn_http

from tenant_node.warm_clientapp import task_heartbeat_fn


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
