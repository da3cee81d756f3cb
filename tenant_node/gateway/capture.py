"""Durable capture with group commit, and the in-memory session states.

An answered call is released to its client only once its events are appended and
committed (invariant 6: acknowledged = durable). One writer thread owns the appends: it
takes every capture waiting when it wakes (up to ``max_batch``) and appends them in one
transaction through the store, whose gate is the node's redactor, so one commit (one fsync
on SQLite) covers many calls and raw text is redacted before anything is written. A batch
that fails is retried call by call, so one bad capture fails alone.

Session states (:class:`hermes_fed.serving.assembly.SessionState`) live in an LRU cache on
the event loop's thread; a session that is not there (evicted, or recorded before this
process started) is rebuilt from its stream by a reader thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from hermes_fed.events import NewEvent
from hermes_fed.serving.assembly import SessionState
from hermes_fed.store import AppendResult, EventStore

from .metrics import GatewayMetrics

log = logging.getLogger(__name__)

_Item = tuple[Sequence[NewEvent], Future[list[AppendResult]]]


class CaptureWriter:
    """The single appender: group commits of waiting captures."""

    def __init__(self, store: EventStore, metrics: GatewayMetrics, max_batch: int = 512) -> None:
        self._store = store
        self._metrics = metrics
        self._max_batch = max_batch
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, events: Sequence[NewEvent]) -> Future[list[AppendResult]]:
        future: Future[list[AppendResult]] = Future()
        with self._cond:
            if self._stopping:
                raise RuntimeError("the capture writer is stopping")
            self._queue.append((events, future))
            self._metrics.capture_queue.set(len(self._queue))
            self._cond.notify()
        return future

    async def append(self, events: Sequence[NewEvent]) -> list[AppendResult]:
        """Append ``events`` durably (with whatever else is waiting); raises what the store
        raised for them."""
        return await asyncio.wrap_future(self.submit(events))

    def stop(self) -> None:
        """Finish every capture already submitted, then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()

    def _take(self) -> list[_Item]:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            batch: list[_Item] = []
            while self._queue and len(batch) < self._max_batch:
                batch.append(self._queue.popleft())
            self._metrics.capture_queue.set(len(self._queue))
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return  # stopping, and nothing left
            self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        events: list[NewEvent] = []
        seen: set[Any] = set()
        spans: list[tuple[int, int]] = []
        for item_events, _future in batch:
            start = len(events)
            for event in item_events:
                # A SessionStarted of a session's racing first calls has one id: once.
                if event.event_id not in seen:
                    seen.add(event.event_id)
                    events.append(event)
            spans.append((start, len(events)))
        try:
            results = self._store.append(events)
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0][1], exc)
                return
            log.warning("event=capture_batch_failed size=%d error=%s; retrying one by one",
                        len(batch), type(exc).__name__)
            for item in batch:
                self._commit([item])
            return
        self._metrics.capture_batch.observe(len(batch))
        self._metrics.capture_commit.observe(time.perf_counter() - started)
        for (start, end), (_events, future) in zip(spans, batch, strict=True):
            if not future.cancelled():
                future.set_result(results[start:end])

    @staticmethod
    def _fail(future: Future[list[AppendResult]], exc: Exception) -> None:
        log.error("event=capture_failed error=%s", type(exc).__name__)
        if not future.cancelled():
            future.set_exception(exc)


class SessionCache:
    """Session states by stream id, least recently used first out."""

    def __init__(self, store: EventStore, capacity: int, reader: ThreadPoolExecutor) -> None:
        self._store = store
        self._capacity = capacity
        self._reader = reader
        self._states: OrderedDict[str, SessionState] = OrderedDict()
        self._loading: dict[str, asyncio.Future[SessionState]] = {}

    def __len__(self) -> int:
        return len(self._states)

    def peek(self, stream_id: str) -> SessionState | None:
        return self._states.get(stream_id)

    async def get(self, stream_id: str) -> SessionState:
        state = self._states.get(stream_id)
        if state is not None:
            self._states.move_to_end(stream_id)
            return state
        pending = self._loading.get(stream_id)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SessionState] = loop.create_future()
        self._loading[stream_id] = future
        try:
            state = await loop.run_in_executor(self._reader, self._load, stream_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a lone failure is not "never retrieved"
            raise
        finally:
            self._loading.pop(stream_id, None)
        self._states[stream_id] = state
        future.set_result(state)
        self._evict()
        return state

    def _load(self, stream_id: str) -> SessionState:
        return SessionState.replay(stream_id, self._store.read_stream(stream_id))

    def _evict(self) -> None:
        while len(self._states) > self._capacity:
            for stream_id, state in self._states.items():
                if not state.in_flight:
                    del self._states[stream_id]
                    break
            else:
                return  # every session has a call in flight: keep them all
