"""The Python client of a tenant node: record agent sessions in a few calls.

>>> with IngestClient("127.0.0.1:50061", tenant_id="acme", token=TOKEN) as client:  # doctest: +SKIP
...     session = client.session(user_ref="u-42", model_version="base-v3")
...     tid = session.trajectory(task="2+3?", messages=[...], final_response="5")
...     session.accepted(tid)
...     session.end()
# leaving the block flushes: the buffered events go to the node in batches

Events are checked against the catalog before they are buffered (a bad call fails at the
call site, not later in a batch), batched up to ``batch_size`` (or sent after
``max_delay_s`` by a background thread, when set), and sent with retry and
back-off (:mod:`hermes_fed.client.transport`). Event ids are time-ordered UUIDv7, so a
retried batch is a no-op on the node and the log's id index stays append-mostly.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hermes_fed.errors import SchemaError
from hermes_fed.events import DEFAULT_CATALOG, NewEvent, StoredEvent, canonical_json
from hermes_fed.formats.trajectory import trajectory_problem
from hermes_fed.store import AppendResult

from .transport import IngestError, NodeTransport, RetryPolicy, events_pb2, ingest_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Assignment:
    """The arm a user was assigned to (see ``AssignVariant``)."""

    variant: str
    bucket: float
    event_id: uuid.UUID
    position: int
    duplicate: bool


def envelope(event: NewEvent, tenant_id: str) -> Any:
    """The ``hermes_fed.v1.EventEnvelope`` of ``event``."""
    message = events_pb2.EventEnvelope(
        event_id=str(event.event_id), tenant_id=tenant_id, stream_id=event.stream_id,
        type=event.type, subject=event.subject or "",
        data_json=canonical_json(dict(event.data)),
    )
    if event.metadata:
        message.metadata_json = canonical_json(dict(event.metadata))
    message.occurred_at.FromDatetime(event.occurred_at)
    return message


def stored_event(message: Any) -> StoredEvent:
    """A ``StoredEventMessage`` as the library's :class:`StoredEvent`."""
    return StoredEvent(
        position=message.position, event_id=uuid.UUID(message.event_id),
        tenant_id=message.tenant_id, stream_id=message.stream_id,
        stream_version=message.stream_version, type=message.type,
        schema_version=message.schema_version,
        occurred_at=_utc(message.occurred_at), recorded_at=_utc(message.recorded_at),
        data=json.loads(message.data_json), metadata=json.loads(message.metadata_json or b"{}"),
        prev_hash=bytes.fromhex(message.prev_hash), hash=bytes.fromhex(message.hash),
        erased_fields=tuple(message.erased_fields),
    )


def _utc(timestamp: Any) -> datetime:
    from datetime import UTC

    moment: datetime = timestamp.ToDatetime(tzinfo=UTC)
    return moment


def check_event(event: NewEvent) -> None:
    """Raise ``SchemaError`` if ``event`` would be refused by the node's catalog checks."""
    data = DEFAULT_CATALOG.schema(event.type).validate(event.data)
    if event.type == "TrajectoryRecorded":
        problem = trajectory_problem(data)
        if problem:
            field, _, what = problem.partition(": ")
            raise SchemaError(event.type, field, what)


class IngestClient:
    """A buffered, retrying client of one tenant node (thread-safe)."""

    def __init__(
        self,
        target: str,
        *,
        tenant_id: str,
        token: str,
        root_certificates: bytes | None = None,
        batch_size: int = 100,
        retry: RetryPolicy | None = None,
        transport: NodeTransport | None = None,
        max_delay_s: float | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_delay_s is not None and not max_delay_s > 0:
            raise ValueError(f"max_delay_s must be > 0 or None, got {max_delay_s}")
        self.tenant_id = tenant_id
        self.batch_size = batch_size
        self.transport = transport or NodeTransport(
            target, token, root_certificates=root_certificates, retry=retry)
        self._buffer: list[NewEvent] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._flusher: threading.Thread | None = None
        if max_delay_s is not None:
            # A quiet agent's events should not wait for a full batch indefinitely.
            self._flusher = threading.Thread(target=self._flush_every, args=(max_delay_s,),
                                             name="hermes-fed-flush", daemon=True)
            self._flusher.start()

    def _flush_every(self, seconds: float) -> None:
        while not self._closing.wait(seconds):
            if not self._buffer:
                continue
            try:
                self.flush()
            except IngestError as exc:  # transient: the events stay buffered for next time
                log.warning("event=background_flush_failed code=%s retryable=%s",
                            exc.code, exc.retryable)

    # --- sessions ------------------------------------------------------------------------
    def session(
        self, user_ref: str, model_version: str, *, session_id: str | None = None,
        variant: str | None = None, ab_test_id: str | None = None,
    ) -> SessionRecorder:
        """Start recording a session (buffers its ``SessionStarted`` event)."""
        return SessionRecorder(self, user_ref, model_version, session_id=session_id,
                               variant=variant, ab_test_id=ab_test_id)

    # --- appending -----------------------------------------------------------------------
    def enqueue(self, event: NewEvent) -> None:
        """Buffer ``event`` (checked first); send a batch when ``batch_size`` are waiting."""
        check_event(event)
        with self._lock:
            self._buffer.append(event)
            full = len(self._buffer) >= self.batch_size
        if full:
            self.flush()

    def flush(self) -> list[AppendResult]:
        """Send every buffered event, in batches; returns their results.

        On a transient failure that outlasts the retries the unsent events stay buffered
        (a later flush re-sends them; their ids make that safe) and ``IngestError`` is raised.
        """
        results: list[AppendResult] = []
        with self._lock:
            while self._buffer:
                batch = self._buffer[: self.batch_size]
                try:
                    results.extend(self.append(batch))
                except IngestError as exc:
                    if not exc.retryable:
                        del self._buffer[: len(batch)]  # refused as a whole: never accepted
                    raise
                del self._buffer[: len(batch)]
        return results

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def append(
        self, events: Sequence[NewEvent], expected_versions: Mapping[str, int] | None = None
    ) -> list[AppendResult]:
        """Append ``events`` now as one batch (all or nothing), with retry."""
        request = ingest_pb2.AppendEventsRequest(
            events=[envelope(e, self.tenant_id) for e in events],
            expected_versions=dict(expected_versions or {}),
        )
        response = self.transport.append_events(request)
        return [AppendResult(uuid.UUID(r.event_id), r.position, r.stream_version, r.duplicate)
                for r in response.results]

    def append_stream(self, batches: Sequence[Sequence[NewEvent]]) -> list[AppendResult]:
        """Send several batches on one client-streaming call (each its own transaction)."""
        requests = [ingest_pb2.AppendEventsRequest(events=[envelope(e, self.tenant_id)
                                                           for e in batch])
                    for batch in batches]
        response = self.transport.append_stream(requests)
        return [AppendResult(uuid.UUID(r.event_id), r.position, r.stream_version, r.duplicate)
                for r in response.results]

    # --- reading and assignment ----------------------------------------------------------
    def read_stream(self, stream_id: str) -> list[StoredEvent]:
        request = ingest_pb2.ReadStreamRequest(stream_id=stream_id)
        return [stored_event(m) for m in self.transport.read(request)]

    def read_log(self, after: int = 0, limit: int = 0) -> list[StoredEvent]:
        request = ingest_pb2.ReadStreamRequest(after_position=after, limit=limit)
        return [stored_event(m) for m in self.transport.read(request)]

    def assign_variant(
        self, ab_test_id: str, user_ref: str, arms: Mapping[str, float]
    ) -> Assignment:
        """Assign ``user_ref`` to one of ``arms`` (name -> weight); recorded on the node."""
        request = ingest_pb2.AssignVariantRequest(
            ab_test_id=ab_test_id, user_ref=user_ref,
            arms=[ingest_pb2.Arm(name=n, weight=w) for n, w in arms.items()])
        response = self.transport.assign_variant(request)
        return Assignment(response.variant, response.bucket, uuid.UUID(response.event_id),
                          response.position, response.duplicate)

    def wait_until_serving(self, timeout_s: float = 30.0) -> None:
        self.transport.wait_until_serving(timeout_s)

    def close(self) -> None:
        self._closing.set()
        if self._flusher is not None:
            self._flusher.join()
        try:
            self.flush()
        finally:
            self.transport.close()

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SessionRecorder:
    """The events of one session (``session-<id>``), buffered in the client."""

    def __init__(
        self, client: IngestClient, user_ref: str, model_version: str, *,
        session_id: str | None = None, variant: str | None = None, ab_test_id: str | None = None,
    ) -> None:
        self.client = client
        self.session_id = session_id or uuid.uuid4().hex
        self.stream_id = f"session-{self.session_id}"
        self.user_ref = user_ref
        data: dict[str, Any] = {"user_ref": user_ref, "model_version": model_version}
        if variant is not None:
            data["variant"] = variant
        if ab_test_id is not None:
            data["ab_test_id"] = ab_test_id
        self._emit("SessionStarted", data, subject=user_ref)

    def _emit(self, event_type: str, data: Mapping[str, Any], subject: str | None = None) -> None:
        self.client.enqueue(NewEvent(stream_id=self.stream_id, type=event_type, data=data,
                                     subject=subject))

    def trajectory(
        self, *, task: str, messages: Sequence[Mapping[str, Any]], final_response: str | None = None,
        task_type: str = "unknown", tools: Sequence[Mapping[str, Any]] = (),
        trajectory_id: str | None = None,
    ) -> str:
        """Record one trajectory (CONTRIBUTING.md shape); returns its ``trajectory_id``.

        ``messages`` and ``tools`` may be OpenAI-shaped as well (``content: null`` beside
        ``tool_calls`` of nested ``function`` objects with JSON-string arguments, text
        parts, ``developer`` turns, ``{"type": "function", "function": ...}`` tools): they
        are converted by :mod:`hermes_fed.serving.conversion`, as the gateway does.
        """
        from hermes_fed.errors import FormatError
        from hermes_fed.serving.conversion import (
            from_openai_messages,
            is_openai_shaped,
            tools_from_openai,
        )

        try:
            if is_openai_shaped(messages):
                messages = from_openai_messages(list(messages))
            if any(isinstance(t, Mapping) and "function" in t for t in tools):
                tools = tools_from_openai(list(tools))
        except FormatError as exc:
            field, _, problem = str(exc).partition(": ")
            raise SchemaError("TrajectoryRecorded", field, problem) from None
        tid = trajectory_id or f"t-{uuid.uuid4().hex}"
        if final_response is None:
            final_response = next((str(m.get("content", "")) for m in reversed(messages)
                                   if m.get("role") == "assistant"), "")
        self._emit("TrajectoryRecorded", {
            "trajectory_id": tid, "task": task, "task_type": task_type,
            "messages": [dict(m) for m in messages], "tools": [dict(t) for t in tools],
            "final_response": final_response,
        }, subject=self.user_ref)
        return tid

    def accepted(self, trajectory_id: str) -> None:
        self._emit("OutputAccepted", {"trajectory_id": trajectory_id})

    def retried(self, trajectory_id: str) -> None:
        self._emit("RetryRequested", {"trajectory_id": trajectory_id})

    def edited(self, trajectory_id: str, edit_ratio: float) -> None:
        if not 0.0 <= edit_ratio <= 1.0:
            raise ValueError(f"edit_ratio must be in [0, 1], got {edit_ratio}")
        self._emit("OutputEdited", {"trajectory_id": trajectory_id, "edit_ratio": edit_ratio})

    def continued(self, trajectory_id: str) -> None:
        self._emit("SessionContinued", {"trajectory_id": trajectory_id})

    def error(self, trajectory_id: str, reason: str = "") -> None:
        self._emit("ErrorReported", {"trajectory_id": trajectory_id, "reason": reason})

    def end(self, reason: str = "") -> None:
        self._emit("SessionEnded", {"reason": reason})
