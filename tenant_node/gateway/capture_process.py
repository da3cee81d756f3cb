"""The capture process: a busy gateway's redaction and appends on a second core.

One gateway process holds one GIL. A call costs its HTTP work (the agent's request, the
upstream's answer) and its capture (detection, redaction, sealing, the append); under load
both queue for that one GIL, so a 2-core machine ran the gateway at one core's pace. The
capture process is a child of the gateway that owns a second writer of the same log (the
same gate, group commit and WAL checkpoints as the gateway's own writer,
:func:`tenant_node.gateway.capture.build_writer`) and appends the captures it is sent.

Nothing about durability changes. The gateway sends a capture's events over a pipe (memory,
never a file: raw text still reaches no disk before its redaction) and releases the answer
only once the child has replied that the group holding them committed (invariant 6). A
lone call is still captured in the gateway itself, on its event loop: the pipe's two
wake-ups would cost it more than the second core gains. The child detects nothing ahead of
a capture: on its single GIL that slowed its group commits more than it saved
(``bench/gateway``: 8 clients, 496 calls/s with it, 558 without, 357 with no capture
process).

If the child dies, every capture it had not answered is appended by the gateway's own
writer: events keep their ids, so one the child had committed is a duplicate and nothing
is stored twice (invariant 3). The gateway starts a new child ``RESTART_AFTER_S`` later
(longer after children that never got ready: a log that cannot be opened, say).
The gateway, told to stop, stops the child after the calls in flight: the child commits
what it was sent, then exits (a child still loading is killed: it was sent nothing). The
child ignores SIGINT (Ctrl-C reaches the whole process group), ends as gracefully on
SIGTERM, and exits when the gateway's end of the pipe closes, a ``kill -9`` of the
gateway included; whatever it had not answered when it ended, the gateway appends.

The child's metrics (group commits, checkpoints, redactions) are recorded, shipped with its
replies and counted into the gateway's registry, so ``/metrics`` shows one gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import multiprocessing
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from hermes_fed.events import NewEvent
from hermes_fed.store import AppendResult

log = logging.getLogger(__name__)

#: Seconds after a child's death before the gateway starts another; doubled (up to
#: ``RESTART_MAX_S``) after each child that ended before it was ready.
RESTART_AFTER_S = 5.0
RESTART_MAX_S = 60.0

Op = tuple[str, str, tuple[Any, ...], str, Any]
"""A metric update done in the child: (registry kind, attribute, labels, method, value)."""


class CaptureProcessGone(RuntimeError):
    """The capture process ended before it answered."""


class CaptureFailed(RuntimeError):
    """The capture process's append raised; ``kind`` is the store error's type name (only
    the name crosses the pipe: an error's message may quote the data)."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"the capture process's append failed: {kind}")
        self.kind = kind


# --- metrics: recorded in the child, counted in the gateway ---------------------------------
class _Recorder:
    """Stands in for a metric in the child: its updates become :data:`Op` entries."""

    __slots__ = ("_kind", "_labels", "_name", "_sink")

    def __init__(self, sink: deque[Op], kind: str, name: str,
                 labels: tuple[Any, ...] = ()) -> None:
        self._sink, self._kind, self._name, self._labels = sink, kind, name, labels

    def labels(self, *args: Any, **kwargs: Any) -> _Recorder:
        return _Recorder(self._sink, self._kind, self._name,
                         (args, tuple(sorted(kwargs.items()))))

    def inc(self, amount: float = 1) -> None:
        self._sink.append((self._kind, self._name, self._labels, "inc", amount))

    def observe(self, amount: float) -> None:
        self._sink.append((self._kind, self._name, self._labels, "observe", amount))

    def set(self, value: float) -> None:
        self._sink.append((self._kind, self._name, self._labels, "set", value))

    def set_function(self, _function: Callable[[], float]) -> None:
        return None  # a callback cannot cross the pipe; the gateway's own gauge stays


def record_metrics(metrics: Any, kind: str, sink: deque[Op]) -> None:
    """Replace every Prometheus metric of ``metrics`` by a recorder writing to ``sink``."""
    for name, value in list(vars(metrics).items()):
        if isinstance(value, MetricWrapperBase):
            setattr(metrics, name, _Recorder(sink, kind, name))


#: The child's own gauges, shown beside the gateway's under names of their own.
_RENAMED = {("gateway", "capture_queue"): "capture_process_queue"}


def apply_ops(ops: Sequence[Op], targets: dict[str, Any]) -> None:
    """Count the child's metric updates into the gateway's metrics."""
    for kind, name, labels, method, value in ops:
        metric = getattr(targets[kind], _RENAMED.get((kind, name), name), None)
        if metric is None:
            continue
        if labels:
            args, kwargs = labels
            metric = metric.labels(*args, **dict(kwargs))
        getattr(metric, method)(value)


def _drain(sink: deque[Op]) -> list[Op]:
    out: list[Op] = []
    while sink:
        out.append(sink.popleft())
    return out


# --- the child ---------------------------------------------------------------------------------
def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # through child_main's finally: what it was sent commits


def child_main(config: Any, conn: Any) -> None:
    """The capture process (``multiprocessing`` spawn target): open the log behind the
    node's gate, append what the gateway sends, answer each capture once committed."""
    # Ctrl-C reaches the whole process group: the gateway decides when this ends. SIGTERM
    # (a supervisor's stop, multiprocessing's at exit) ends it after what it was sent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    from hermes_fed.cli import daemon_logging

    daemon_logging(0)  # the gateway's format, into the gateway's stderr
    from tenant_node.ingest.metrics import NodeMetrics

    from .capture import build_writer
    from .metrics import GatewayMetrics

    sink: deque[Op] = deque()
    metrics, node_metrics = GatewayMetrics(), NodeMetrics()
    record_metrics(metrics, "gateway", sink)
    record_metrics(node_metrics, "node", sink)
    try:
        store, writer = build_writer(config, metrics, node_metrics)
    except Exception as exc:
        log.exception("event=capture_process_failed_to_start")
        conn.send(("failed", 0, f"{type(exc).__name__}: {exc}", []))
        return
    writer.start()
    lock = threading.Lock()

    def reply(kind: str, cid: int, payload: Any) -> None:
        # OSError: the gateway is gone; its captures' fate is its own now
        with lock, contextlib.suppress(OSError):
            conn.send((kind, cid, payload, _drain(sink)))

    gc.collect()
    gc.freeze()  # the gate's ~170,000 objects: out of the collector's full passes
    reply("ready", 0, None)
    idle_flush = 1.0
    try:
        while True:
            if not conn.poll(idle_flush):
                if sink:
                    reply("ops", 0, None)  # a checkpoint's figures, with nothing to answer
                continue
            try:
                message = conn.recv()
            except (EOFError, OSError):
                log.info("event=capture_process_parent_gone")
                break
            kind = message[0]
            if kind == "stop":
                break
            _, cid, events, moved = message
            if moved:  # sessions the gateway's own writer captured last
                writer.forget(moved)

            def answered(future: Any, cid: int = cid) -> None:
                error = future.exception()
                if error is None:
                    reply("ok", cid, future.result())
                else:
                    reply("err", cid, type(error).__name__)

            writer.submit(events).add_done_callback(answered)
    finally:
        writer.stop()  # every capture received commits (and is answered) first
        head = store.head()
        store.close()
        reply("stopped", 0, head)


# --- the gateway's side ----------------------------------------------------------------------
class CaptureProcess:
    """The gateway's handle on its capture process: start, send captures, await replies.

    Used on the event loop's thread only (replies are read by the loop, ``add_reader``).
    ``targets`` are the gateway's metrics by kind (``gateway``, ``node``), into which the
    child's updates are counted; ``on_state`` is told 1 when the child is ready, 0 when it
    is gone; ``on_start`` is called at each spawn. A child that ends is replaced after a
    pause, until :meth:`stop`."""

    def __init__(self, config: Any, targets: dict[str, Any],
                 on_state: Callable[[int], None] = lambda _: None,
                 on_start: Callable[[], None] = lambda: None) -> None:
        self._config = config
        self._targets = targets
        self._on_state = on_state
        self._on_start = on_start
        self._pause = RESTART_AFTER_S
        self._stopped = False
        self._restart: asyncio.TimerHandle | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[list[AppendResult]]] = {}
        self._conn: Any = None
        self._process: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ready = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Spawn the child; it reports ready on its own (meanwhile the gateway captures
        every call itself)."""
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(target=child_main, args=(self._config, theirs),
                                  name="hermes-capture", daemon=True)
        process.start()
        theirs.close()
        self._conn, self._process, self._loop = ours, process, loop
        self._restart = None
        self._on_start()
        loop.add_reader(ours.fileno(), self._readable)
        log.info("event=capture_process_started pid=%s", process.pid)

    def _start_again(self) -> None:
        if not self._stopped and self._conn is None and self._loop is not None:
            self.start(self._loop)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def state(self) -> str:
        """``ready``, ``starting`` (spawned, loading) or ``gone`` (ended; replaced after a
        pause)."""
        if self.ready:
            return "ready"
        return "gone" if self._conn is None else "starting"

    async def append(self, events: Sequence[NewEvent],
                     moved: Sequence[str] = ()) -> list[AppendResult]:
        """Append ``events`` through the child; raises :class:`CaptureProcessGone` if it
        ended first, :class:`CaptureFailed` if the store refused them. ``moved``: sessions
        another writer captured last (the child reads their placeholder numbers again)."""
        if not self.ready:
            raise CaptureProcessGone("the capture process is not running")
        future: asyncio.Future[list[AppendResult]] = asyncio.get_running_loop().create_future()
        cid = next(self._ids)
        self._pending[cid] = future
        try:
            self._conn.send(("append", cid, list(events), list(moved)))
        except OSError as exc:
            self._pending.pop(cid, None)
            self._gone(f"send failed: {exc}")
            raise CaptureProcessGone("the capture process is gone") from exc
        return await future

    def _readable(self) -> None:
        try:
            while self._conn is not None and self._conn.poll():
                self._handle(self._conn.recv())
        except (EOFError, OSError) as exc:
            self._gone(type(exc).__name__)

    def _handle(self, message: tuple[str, int, Any, list[Op]]) -> None:
        kind, cid, payload, ops = message
        if ops:
            apply_ops(ops, self._targets)
        if kind == "ready":
            self.ready = True
            self._pause = RESTART_AFTER_S
            self._on_state(1)
            log.info("event=capture_process_ready pid=%s", self.pid)
        elif kind in ("ok", "err"):
            future = self._pending.pop(cid, None)
            if future is None or future.done():
                return
            if kind == "ok":
                future.set_result(payload)
            else:
                future.set_exception(CaptureFailed(payload))
        elif kind == "failed":
            log.error("event=capture_process_failed error=%s", payload)
        elif kind == "stopped":
            log.info("event=capture_process_stopped head=%s", payload)

    def _gone(self, why: str) -> None:
        if self._conn is None:
            return
        log.error("event=capture_process_gone why=%s pending=%d restart_in_s=%.0f", why,
                  len(self._pending), self._pause)
        if not self.ready:  # it never got ready: wait longer before the next one
            pause, self._pause = self._pause, min(RESTART_MAX_S, self._pause * 2)
        else:
            pause = self._pause
        self.ready = False
        self._on_state(0)
        if self._loop is not None:
            self._loop.remove_reader(self._conn.fileno())
            if not self._stopped:
                self._restart = self._loop.call_later(pause, self._start_again)
        self._conn.close()
        self._conn = None
        self._fail_pending("the capture process ended")
        if self._process is not None:
            self._process.join(timeout=0)  # reap it if it has exited

    def _fail_pending(self, why: str) -> None:
        """Captures sent and not answered: their callers append them themselves."""
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(CaptureProcessGone(why))

    def stop(self, timeout_s: float = 60.0) -> None:
        """Have the child commit what it was sent and exit (after the calls in flight). A
        child still loading was sent nothing: it is killed, not waited for."""
        self._stopped = True
        if self._restart is not None:
            self._restart.cancel()
        conn, process = self._conn, self._process
        was_ready, self.ready = self.ready, False
        if conn is not None:
            if self._loop is not None:
                self._loop.remove_reader(conn.fileno())
            if was_ready or self._pending:
                self._stop_child(conn, timeout_s)
            elif process is not None:
                process.kill()  # still loading: it was sent nothing
            conn.close()
            self._conn = None
        self._fail_pending("the capture process stopped")
        if process is not None:
            process.join(timeout=timeout_s)
            if process.is_alive():
                log.error("event=capture_process_kill pid=%s", process.pid)
                process.kill()
                process.join(timeout=10)
        self._on_state(0)

    def _stop_child(self, conn: Any, timeout_s: float) -> None:
        """Tell the child to stop and handle its replies until it says it has."""
        try:
            conn.send(("stop",))
            deadline = time.monotonic() + timeout_s
            while conn.poll(max(0.0, deadline - time.monotonic())):
                message = conn.recv()
                self._handle(message)
                if message[0] == "stopped" or time.monotonic() >= deadline:
                    return
        except (EOFError, OSError):
            return
