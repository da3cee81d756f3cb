"""Group commit: one appender thread that writes many callers' batches in one transaction.

Callers on many threads (gRPC handlers, the gateway's captures) submit a batch and wait for
its results. The appender takes every batch waiting when it wakes and appends them as one
batch through the store -- one gate call, one transaction, one commit (one fsync on SQLite)
-- so a busy node pays the per-transaction costs (subject-key lookup, write lock, placeholder
index, commit) once per group instead of once per call. A caller's batch is still all or
nothing and acknowledged only once committed (invariant 6): when a group fails, each of its
batches is appended again on its own, so one bad batch fails alone and its caller gets the
store's own error.

What is never grouped, so that grouping changes no outcome:

* a batch with expected stream versions (optimistic concurrency) is appended alone: a
  conflict must fail that batch, not its neighbours;
* a batch naming an event id that an earlier batch of the group names (a retry racing its
  original, the gateway's racing first calls of a session) starts the next group, so the
  store's idempotency answers it as a duplicate exactly as it would have alone.

Batches keep their submission order: a group is a prefix of the queue.

A caller that knows it is alone (the gateway with one call in flight) may append on its
own thread with :meth:`GroupCommitter.append_if_idle` when nothing is queued or being
committed: there is nobody to group with, and the hand-off to the appender thread and
back is saved; the appender waits for it, so one append still runs at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hermes_fed.events import NewEvent

from .port import AppendResult, EventStore

log = logging.getLogger(__name__)

__all__ = ["GroupCommitter", "GroupStats"]


@dataclass(frozen=True, slots=True)
class GroupStats:
    """One committed group, for the caller's metrics."""

    batches: int
    events: int
    seconds: float


@dataclass(slots=True)
class _Pending:
    events: Sequence[NewEvent]
    expected: Mapping[str, int] | None
    future: Future[list[AppendResult]] = field(default_factory=Future)


class GroupCommitter:
    """The single appender of a store: group commits of concurrently submitted batches.

    Parameters
    ----------
    store
        The store appended to (its gate redacts each group before anything is written).
    max_batches, max_events
        A group stops at this many batches or events (a batch larger than ``max_events``
        is still appended, alone).
    on_commit
        Called after each committed group with its :class:`GroupStats` (metrics).
    on_queue
        Called with the number of batches waiting whenever it changes (a gauge).
    name
        The appender thread's name.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        max_batches: int = 512,
        max_events: int = 10_000,
        on_commit: Callable[[GroupStats], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
        name: str = "group-commit",
    ) -> None:
        if max_batches < 1 or max_events < 1:
            raise ValueError(f"max_batches and max_events must be >= 1, got {max_batches!r}, "
                             f"{max_events!r}")
        self._store = store
        self._max_batches = max_batches
        self._max_events = max_events
        self._on_commit = on_commit
        self._on_queue = on_queue
        self._queue: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = False  # a group (or a caller's own append) is being committed
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the appender (also done by the first :meth:`submit`; idempotent)."""
        with self._cond:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._thread.ident is None:
            self._thread.start()

    def submit(self, events: Sequence[NewEvent],
               expected_versions: Mapping[str, int] | None = None) -> Future[list[AppendResult]]:
        """Queue ``events`` (one all-or-nothing batch); the future holds their results, in
        order, or the store's exception. Starts the appender on first use."""
        pending = _Pending(events, dict(expected_versions) if expected_versions else None)
        with self._cond:
            if self._stopping:
                raise RuntimeError("the group committer is stopping")
            self._start_locked()
            self._queue.append(pending)
            self._queued()
            self._cond.notify()
        return pending.future

    def append(self, events: Sequence[NewEvent],
               expected_versions: Mapping[str, int] | None = None) -> list[AppendResult]:
        """Append ``events`` durably with whatever else is waiting; blocks until committed
        and raises what the store raised for them."""
        if not events:
            return []
        return self.submit(events, expected_versions).result()

    def append_if_idle(self, events: Sequence[NewEvent]) -> list[AppendResult] | None:
        """Append ``events`` on the caller's thread if nothing is queued or being committed
        (None otherwise: submit them); blocks until committed, raises what the store
        raised. The appender waits meanwhile, so appends never overlap."""
        with self._cond:
            if self._queue or self._busy or self._stopping:
                return None
            self._busy = True
        try:
            return self._append(events, None, 1)
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold every append off while the block runs (a WAL checkpoint's tail): it starts
        once the append under way, if any, has committed."""
        with self._cond:
            self._cond.wait_for(lambda: not self._busy)
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def stop(self) -> None:
        """Commit every batch already submitted, then stop (idempotent)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()

    # --- the appender ------------------------------------------------------------------------
    def _queued(self) -> None:
        if self._on_queue is not None:
            self._on_queue(len(self._queue))

    def _take(self) -> list[_Pending]:
        """The next group: a prefix of the queue (empty once stopping and drained)."""
        with self._cond:
            while (not self._queue and not self._stopping) or self._busy:
                self._cond.wait()
            group: list[_Pending] = []
            ids: set[Any] = set()
            events = 0
            while self._queue and len(group) < self._max_batches:
                head = self._queue[0]
                head_ids = {e.event_id for e in head.events}
                if group and (head.expected or group[0].expected or not ids.isdisjoint(head_ids)
                              or events + len(head.events) > self._max_events):
                    break
                group.append(self._queue.popleft())
                ids |= head_ids
                events += len(head.events)
            self._queued()
            self._busy = bool(group)
            return group

    def _run(self) -> None:
        while True:
            group = self._take()
            if not group:
                return
            try:
                self._commit(group)
            except BaseException as exc:  # pragma: no cover - _commit settles every future
                log.exception("event=group_commit_crashed error=%s", type(exc).__name__)
                for pending in group:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _append(self, events: Sequence[NewEvent], expected: Mapping[str, int] | None,
                batches: int) -> list[AppendResult]:
        """One append through the store, reported to ``on_commit`` once committed."""
        started = time.perf_counter()
        results = self._store.append(events, expected)
        if self._on_commit is not None:
            self._on_commit(GroupStats(batches, len(events), time.perf_counter() - started))
        return results

    def _commit(self, group: list[_Pending]) -> None:
        events = [e for pending in group for e in pending.events]
        try:
            results = self._append(events, group[0].expected if len(group) == 1 else None,
                                   len(group))
        except Exception as exc:
            if len(group) == 1:
                if not group[0].future.cancelled():
                    group[0].future.set_exception(exc)
                return
            # One bad batch must not fail the others: each alone, in order.
            log.info("event=group_commit_split batches=%d error=%s", len(group),
                     type(exc).__name__)
            for pending in group:
                self._commit([pending])
            return
        start = 0
        for pending in group:
            end = start + len(pending.events)
            if not pending.future.cancelled():
                pending.future.set_result(results[start:end])
            start = end
