"""Durable capture with group commit, and the in-memory session states.

An answered call is released to its client only once its events are appended and
committed (invariant 6: acknowledged = durable). One writer thread owns the appends
(:class:`hermes_fed.store.group_commit.GroupCommitter`): it takes every capture waiting when
it wakes (up to ``max_batch``) and appends them in one transaction through the store, whose
gate is the node's redactor, so one commit (one fsync on SQLite) covers many calls and raw
text is redacted before anything is written. A group that fails is retried capture by
capture, so one bad capture fails alone.

Session states (:class:`hermes_fed.serving.assembly.SessionState`) live in an LRU cache on
the event loop's thread; a session that is not there (evicted, or recorded before this
process started) is rebuilt from its stream by a reader thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hermes_fed.errors import LogBusyError
from hermes_fed.events import NewEvent
from hermes_fed.serving.assembly import SessionState
from hermes_fed.store import AppendResult, EventStore
from hermes_fed.store.group_commit import GroupCommitter, GroupStats
from hermes_fed.store.sqlite import without_waiting
from hermes_fed.store.wal_checkpoint import WalCheckpointer
from hermes_fed.store.wal_sync import WalSyncer
from tenant_node.config import NodeConfig
from tenant_node.ingest.metrics import NodeMetrics

from .capture_process import CaptureProcess, CaptureProcessGone
from .metrics import GatewayMetrics

if TYPE_CHECKING:
    from hermes_fed.store.sql import SqlEventStore

log = logging.getLogger(__name__)

#: Sessions whose last capture's writer is remembered (past this, all are forgotten).
_OWNERS_KEPT = 100_000


def build_writer(config: NodeConfig, metrics: GatewayMetrics,
                 node_metrics: NodeMetrics) -> tuple[SqlEventStore, CaptureWriter]:
    """The node's log behind its redaction gate and a capture writer on it, as the
    gateway's settings say (the gateway's own, and its capture process's). Not started.

    Sync-behind: the writer's commits write the WAL (synchronous=NORMAL) and its syncer
    fsyncs it right after; the node's other processes keep their setting. On SQLite no
    commit waits for a WAL checkpoint: the writer's checkpoint thread runs them."""
    from tenant_node.ingest.runtime import open_node_store

    behind = config.gateway.capture_sync == "behind"
    sqlite = config.resolved_store_url.startswith("sqlite:///")
    store = open_node_store(replace(config, sqlite_synchronous="NORMAL") if behind else config,
                            node_metrics, autocheckpoint=not sqlite)
    syncer = WalSyncer(store.engine.url.database or "",
                       metrics.capture_sync_lag.observe) if behind else None
    if syncer is not None:
        metrics.capture_unsynced.set_function(lambda: syncer.pending)
    writer = CaptureWriter(store, metrics, config.gateway.max_capture_batch, syncer,
                           inline=store.dialect == "sqlite",
                           checkpoint_db=store.engine.url.database if sqlite else None,
                           synchronous=config.sqlite_synchronous)
    return store, writer


class CaptureWriter:
    """The single appender: group commits of waiting captures. With ``syncer`` (the
    gateway's ``capture_sync = "behind"``, a SQLite log at ``synchronous=NORMAL``) each
    committed group is handed to it for the WAL fsync before its callers are released.
    With ``checkpoint_db`` (a SQLite log opened with ``autocheckpoint=False``) a
    :class:`WalCheckpointer` checkpoints its WAL on a thread of its own, told of each
    commit, holding the appends off for the checkpoint's short tail only. With a
    :class:`~tenant_node.gateway.capture_process.CaptureProcess` attached, a capture that is
    not a lone call's goes to it (the gateway's second core) while it runs; a session whose
    captures move from one writer to the other has its placeholder numbers read again by
    the one taking it (:meth:`forget`), so they never collide with the other's."""

    def __init__(self, store: EventStore, metrics: GatewayMetrics, max_batch: int = 512,
                 syncer: WalSyncer | None = None, inline: bool = False,
                 checkpoint_db: str | None = None, synchronous: str = "FULL") -> None:
        self._metrics = metrics
        self._syncer = syncer
        self._inline = inline
        self._committer = GroupCommitter(
            store, max_batches=max_batch, on_commit=self._committed,
            on_queue=metrics.capture_queue.set, name="capture-writer")
        self._checkpointer = WalCheckpointer(
            checkpoint_db, synchronous=synchronous, on_checkpoint=self._checkpointed,
            hold_writers=self._committer.exclusive) if checkpoint_db else None
        self._process: CaptureProcess | None = None
        self._gate = getattr(store, "gate", None)
        # Which writer (the capture process: True) took each session's last capture: a
        # session whose captures move between the two is told to the one that takes it,
        # which reads its placeholder numbers again (the other may have added some).
        self._in_process: dict[str, bool] = {}

    def _take(self, events: Sequence[NewEvent], in_process: bool) -> list[str]:
        """Mark ``events``' sessions as captured by one writer; those the other writer (or
        a writer unknown: a session not seen, or forgotten) captured last."""
        owners = self._in_process
        moved = [s for s in {e.stream_id for e in events} if owners.get(s) is not in_process]
        if len(owners) + len(moved) > _OWNERS_KEPT:
            owners.clear()  # unknown again: each next capture re-reads its session's numbers
        for stream_id in moved:
            owners[stream_id] = in_process
        return moved

    def _take_over(self, events: Sequence[NewEvent]) -> None:
        """This process's writer takes ``events``' sessions (see :meth:`_take`)."""
        self.forget(self._take(events, False))

    def forget(self, stream_ids: Sequence[str]) -> None:
        """Sessions another writer captured last: the gate reads their placeholder numbers
        again at their next batch (else a stale number collides in the append, and the
        whole group is redacted again)."""
        forget = getattr(self._gate, "forget", None)
        if forget is not None and stream_ids:
            forget(stream_ids)

    def attach(self, process: CaptureProcess) -> None:
        """Send busy periods' captures to ``process`` (started by the caller)."""
        self._process = process

    def process_health(self) -> dict[str, Any]:
        """The capture process's state and pid (``off`` when there is none)."""
        process = self._process
        if process is None:
            return {"state": "off", "pid": None}
        return {"state": process.state, "pid": process.pid}

    @property
    def process_ready(self) -> bool:
        """Whether a capture process takes captures now."""
        return self._process is not None and self._process.ready

    def _committed(self, stats: GroupStats) -> None:
        if self._syncer is not None:
            self._syncer.request()  # first: the fsync starts while the callers are released
        if self._checkpointer is not None:
            self._checkpointer.request()
        self._metrics.capture_batch.observe(stats.batches)
        self._metrics.capture_commit.observe(stats.seconds)

    def _checkpointed(self, seconds: float, frames: int) -> None:
        self._metrics.wal_checkpoint.observe(seconds)
        self._metrics.wal_checkpoint_frames.inc(frames)

    def start(self) -> None:
        if self._syncer is not None:
            self._syncer.start()
        if self._checkpointer is not None:
            self._checkpointer.start()
        self._committer.start()

    def submit(self, events: Sequence[NewEvent]) -> Future[list[AppendResult]]:
        return self._committer.submit(events)

    async def append(self, events: Sequence[NewEvent], alone: bool = False) -> list[AppendResult]:
        """Append ``events`` durably (with whatever else is waiting); raises what the store
        raised for them. Unless ``alone``, the capture process appends them while it runs.

        ``alone``: the caller is the only call in flight. Then, on a log in a local SQLite
        file (``inline``) and with the writer idle too, the append runs right here on the
        event loop's thread: nothing could join its group, and the two thread hand-offs
        (~0.1-0.2 ms a call on 2 cores) are saved; the loop is held meanwhile, as the GIL
        would hold it while the writer redacts. It never waits for the write lock: if
        another process holds it (the daemon's projections, an import), the capture goes
        to the writer, which does wait, and the loop serves on."""
        try:
            if alone:
                results = self._append_inline(events) if self._inline else None
            else:
                results = await self._append_in_process(events)
            if results is None:
                self._take_over(events)
                results = await asyncio.wrap_future(self.submit(events))
            return results
        except Exception as exc:
            log.error("event=capture_failed error=%s", getattr(exc, "kind", type(exc).__name__))
            raise

    async def _append_in_process(self, events: Sequence[NewEvent]) -> list[AppendResult] | None:
        """The append by the capture process, or None: there is none ready (the writer
        appends them; a capture the process had committed before it ended is a duplicate
        there, nothing is stored twice)."""
        process = self._process
        if process is None or not process.ready:
            return None
        try:
            results = await process.append(events, self._take(events, True))
        except CaptureProcessGone:
            return None
        self._metrics.capture_process_calls.inc()
        return results

    @property
    def inline(self) -> bool:
        """Whether a lone call's capture may commit on the caller's thread (SQLite)."""
        return self._inline

    def _append_inline(self, events: Sequence[NewEvent]) -> list[AppendResult] | None:
        """The append on this thread, or None: the writer is busy, or another process
        holds the log's write lock."""
        self._take_over(events)
        try:
            with without_waiting():
                results = self._committer.append_if_idle(events)
        except LogBusyError:
            self._metrics.capture_inline_busy.inc()
            return None
        if results is not None:
            self._metrics.capture_inline.inc()
        return results

    def stop(self) -> None:
        """Finish every capture already submitted (and its fsync), then stop; the capture
        process first."""
        if self._process is not None:
            self._process.stop()
        self._committer.stop()
        if self._syncer is not None:
            self._syncer.stop()
        if self._checkpointer is not None:
            self._checkpointer.stop()


class RedactAhead:
    """Detection of a call's new messages while the upstream answers.

    The capture redacts a call's new messages and its answer after the answer came and
    before it is released (invariant 6 and 7: nothing raw is written, nothing unwritten is
    acknowledged). The request's part need not wait for the answer: as the call goes
    upstream, one worker thread runs the gate's detection over its new messages (and a new
    trajectory's tools), whose findings the redactor memoises; the capture then finds them
    there. Nothing is minted or written ahead, and a session deny list is applied at
    capture as always (the memo serves texts without one). At most ``max_pending`` calls
    wait for the worker: past that a busy gateway skips it (the capture detects them
    itself). :meth:`settle` is the capture's side: a detection not started yet is dropped
    (the capture does it), one under way is waited for rather than done twice."""

    def __init__(self, gate: Any, pool: ThreadPoolExecutor, max_pending: int = 16) -> None:
        self._prewarm = gate.prewarm
        self._pool = pool
        self._max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()

    def submit(self, messages: Sequence[Any], tools: Sequence[Any] | None) -> Future[None] | None:
        """Start detecting ``messages`` (and ``tools``); None when skipped."""
        with self._lock:
            if self._pending >= self._max_pending:
                return None
            self._pending += 1
        try:
            future = self._pool.submit(self._run, list(messages), list(tools) if tools else None)
        except RuntimeError:  # shutting down
            self._finished()
            return None
        future.add_done_callback(self._finished)  # run, or cancelled by settle
        return future

    def _finished(self, _future: object = None) -> None:
        with self._lock:
            self._pending -= 1

    @staticmethod
    async def settle(future: Future[None] | None, block: bool) -> None:
        """Before a capture: drop ``future``'s detection if it has not started, else wait
        for it to end (``block``: on this thread, which is about to be held anyway)."""
        if future is None or future.cancel() or future.done():
            return
        if block:
            future.result()
        else:
            await asyncio.wrap_future(future)

    def _run(self, messages: list[Any], tools: list[Any] | None) -> None:
        try:
            self._prewarm(messages, "messages", 1)
            if tools:
                self._prewarm(tools, "tools", 1)
        except Exception as exc:  # the capture detects them itself, and raises if it must
            log.debug("event=redact_ahead_failed error=%s", type(exc).__name__)


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

    async def get(self, stream_id: str, inline: bool = False) -> SessionState:
        """The session's state, read from its stream when it is not cached: by a reader
        thread, or with ``inline`` (a lone call on a local SQLite log, whose reads never
        wait for a writer) on this thread, sparing the two thread hand-offs (~0.1 ms of
        the read's ~0.2 ms here) while the event loop has nothing else to do."""
        state = self._states.get(stream_id)
        if state is not None:
            self._states.move_to_end(stream_id)
            return state
        pending = self._loading.get(stream_id)
        if pending is not None:
            return await asyncio.shield(pending)
        if inline and not self._loading:
            state = self._load(stream_id)
        else:
            state = await self._load_on_reader(stream_id)
        self._states[stream_id] = state
        self._evict()
        return state

    async def _load_on_reader(self, stream_id: str) -> SessionState:
        """:meth:`_load` by the reader thread; other calls of the session wait for it."""
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
        future.set_result(state)  # its waiters run after this task has cached it
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
