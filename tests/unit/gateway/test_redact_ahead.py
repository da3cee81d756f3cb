"""Redact-ahead's hand-over to the capture (``tenant_node.gateway.capture.RedactAhead``):
a detection not started yet is dropped, one under way is waited for, none is counted
twice against the worker's limit."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from hermes_fed.privacy import RedactionConfig, Redactor
from tenant_node.gateway.capture import RedactAhead

TEXT = "please mail the invoice to jane.doe@example.com"


class HeldGate:
    """The real redactor's prewarm, entered and then held until the test releases it."""

    def __init__(self) -> None:
        self.redactor = Redactor(RedactionConfig(), b"k" * 32)
        self.entered = threading.Event()
        self.release = threading.Event()

    def prewarm(self, value: Any, key: str | None = None, depth: int = 0) -> None:
        self.entered.set()
        assert self.release.wait(30)
        self.redactor.prewarm(value, key, depth)


def test_a_detection_not_started_is_dropped_and_one_under_way_is_waited_for() -> None:
    # Prepare: one worker, held inside the first call's detection; a second call queued
    gate = HeldGate()
    pool = ThreadPoolExecutor(max_workers=1)
    ahead = RedactAhead(gate, pool, max_pending=2)
    running = ahead.submit([{"role": "user", "content": TEXT}], None)
    assert running is not None and gate.entered.wait(30)
    queued = ahead.submit([{"role": "user", "content": "another " + TEXT}], None)
    assert queued is not None
    assert ahead.submit([{"role": "user", "content": "a third"}], None) is None  # at the limit

    # Execute: the second call's capture settles first (its detection never started), then
    # the first's, on another thread while the test lets the worker go
    asyncio.run(RedactAhead.settle(queued, block=False))
    releaser = threading.Timer(0.05, gate.release.set)
    releaser.start()
    asyncio.run(RedactAhead.settle(running, block=True))
    releaser.join()
    pool.shutdown(wait=True)

    # Assert: the queued one was cancelled, the running one finished, and their slots are
    # free again
    assert queued.cancelled()
    assert running.done() and not running.cancelled()
    assert gate.redactor._memo, "the finished detection is in the redactor's memo"
    assert ahead._pending == 0


def test_settle_leaves_a_finished_detection_alone_and_takes_no_detection() -> None:
    # Prepare: a detection that already ended, with its result
    finished: Future[None] = Future()
    finished.set_result(None)

    # Execute: settled on this thread and awaited; and a call that had none
    asyncio.run(RedactAhead.settle(finished, block=True))
    asyncio.run(RedactAhead.settle(finished, block=False))
    asyncio.run(RedactAhead.settle(None, block=True))

    # Assert: not cancelled after the fact, its result still there
    assert finished.done() and not finished.cancelled() and finished.result() is None
