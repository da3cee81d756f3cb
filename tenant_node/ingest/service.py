"""The ``hermes_fed.v1.IngestService`` handlers: validate, redact (the store's gate), append.

Handlers receive raw request bytes so that a request which does not parse is answered with
``INVALID_ARGUMENT`` naming the field (see :mod:`tenant_node.ingest.wire`), not gRPC's generic
``INTERNAL``. Every outcome is logged as one key=value line without event data.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

import grpc
from sqlalchemy import exc as sa_exc

from hermes_fed.errors import (
    ConcurrencyError,
    HermesFedError,
    IntegrityError,
    KeyringError,
    OperationalError,
    RedactionError,
    SchemaError,
)
from hermes_fed.events import NewEvent, StoredEvent
from hermes_fed.events.codec import canonical_json
from hermes_fed.store import AppendResult, EventStore
from hermes_fed.store.group_commit import GroupCommitter
from protos.hermes_fed.v1 import events_pb2, ingest_pb2
from tenant_node.ingest.assignment import Arm, assign, assignment_event_id
from tenant_node.ingest.metrics import NodeMetrics
from tenant_node.ingest.validation import MAX_SUBJECT, IngestLimits, RejectedRequest, bounded, decode_batch
from tenant_node.ingest.wire import WireProblem, parse_request

log = logging.getLogger(__name__)

SERVICE = "hermes_fed.v1.IngestService"
MAX_TEST_ID = 128  # VariantAssigned.ab_test_id's limit (the stream id is abtest-<id>)
MAX_ARM_NAME = 128  # VariantAssigned.variant's limit
MAX_ARMS = 16


def _status_for(exc: Exception) -> tuple[grpc.StatusCode, str, str]:
    """The status, message and metrics reason of a failure (no event data in them)."""
    if isinstance(exc, RejectedRequest):
        return exc.code, str(exc), exc.reason
    if isinstance(exc, WireProblem):
        reason = "invalid_utf8" if "UTF-8" in exc.problem else "malformed_protobuf"
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc), reason
    if isinstance(exc, ConcurrencyError):
        # ABORTED: the client should re-read the stream and retry (gRPC status semantics).
        return grpc.StatusCode.ABORTED, str(exc), "concurrency_conflict"
    if isinstance(exc, SchemaError):
        return grpc.StatusCode.INVALID_ARGUMENT, f"events: {exc}", "schema_violation"
    if isinstance(exc, (OperationalError, sa_exc.OperationalError)):
        # Transient database trouble (unreachable, locked, a lost write race): the whole
        # batch rolled back, and retrying it with the same event ids is safe.
        return (grpc.StatusCode.UNAVAILABLE, "the event store is busy or unavailable; retry",
                "store_unavailable")
    if isinstance(exc, RedactionError):
        return (grpc.StatusCode.INTERNAL, "redaction failed; nothing was written",
                "redaction_failed")
    if isinstance(exc, KeyringError):
        return grpc.StatusCode.INTERNAL, "key ring error; nothing was written", "keyring"
    return (grpc.StatusCode.INTERNAL,
            f"internal error ({type(exc).__name__}); nothing was written", "internal")


def _results(results: Sequence[AppendResult]) -> list[ingest_pb2.AppendResult]:
    return [
        ingest_pb2.AppendResult(event_id=str(r.event_id), position=r.position,
                                stream_version=r.stream_version, duplicate=r.duplicate)
        for r in results
    ]


def stored_event_message(event: StoredEvent) -> events_pb2.StoredEventMessage:
    message = events_pb2.StoredEventMessage(
        position=event.position, event_id=str(event.event_id), tenant_id=event.tenant_id,
        stream_id=event.stream_id, stream_version=event.stream_version, type=event.type,
        schema_version=event.schema_version, data_json=canonical_json(dict(event.data)),
        metadata_json=canonical_json(dict(event.metadata)), prev_hash=event.prev_hash.hex(),
        hash=event.hash.hex(), erased_fields=list(event.erased_fields),
    )
    message.occurred_at.FromDatetime(event.occurred_at)
    message.recorded_at.FromDatetime(event.recorded_at)
    return message


class IngestService:
    """The ingest handlers over one tenant's store (whose gate is the redactor)."""

    def __init__(
        self, store: EventStore, limits: IngestLimits, metrics: NodeMetrics, secret: bytes,
        *, group_commit: bool = True,
    ) -> None:
        self.store = store
        self.limits = limits
        self.metrics = metrics
        self._secret = secret
        # Concurrent AppendEvents batches share one transaction (hermes_fed.store.group_commit):
        # the per-commit costs (subject keys, write lock, placeholder index, fsync) are paid
        # once per group. None: every batch is its own append, on the handler's thread.
        self._committer: GroupCommitter | None = GroupCommitter(
            store, max_events=max(limits.max_batch_events, 1000),
            on_commit=lambda stats: metrics.group_batches.observe(stats.batches),
            on_queue=metrics.append_queue.set, name="ingest-append",
        ) if group_commit else None
        # Appends run concurrently: the store serialises the write itself (its lock, then
        # the database's write lock: invariant 4), so one handler's redaction runs while
        # another's commit waits on the disk. (An older store made per-subject keys in a
        # deferred SQLite transaction that failed with SQLITE_BUSY_SNAPSHOT when raced;
        # it now reads them in autocommit and writes them under BEGIN IMMEDIATE, and a
        # placeholder clash between two handlers is retried by the log.) The lock below
        # only orders AssignVariant's read-then-append and the head gauge.
        self._append_lock = threading.Lock()
        self._head = 0

    # --- helpers ---------------------------------------------------------------------------
    def _append(
        self, events: list[NewEvent], expected: dict[str, int]
    ) -> list[AppendResult]:
        if self._committer is not None:
            results = self._committer.append(events, expected or None)
        else:
            results = self.store.append(events, expected or None)
        duplicates = sum(r.duplicate for r in results)
        if duplicates:
            self.metrics.events_duplicate.inc(duplicates)
        self.metrics.count_ingested(
            [e.type for e, r in zip(events, results, strict=True) if not r.duplicate])
        new = [r.position for r in results if not r.duplicate]
        if new:
            with self._append_lock:  # a retried batch must not move the gauge backwards
                self._head = max(self._head, *new)
                self.metrics.log_head.set(self._head)
        return results

    def _reject(self, context: grpc.ServicerContext, exc: Exception, n_events: int,
                method: str, prefix: str = "") -> None:
        code, message, reason = _status_for(exc)
        message = bounded(message)
        self.metrics.events_rejected.labels(reason=reason).inc(max(n_events, 1))
        log.warning("event=batch_rejected method=%s code=%s reason=%s events=%d field=%s",
                    method, code.name, reason, n_events, message.split(":")[0])
        if not isinstance(exc, (HermesFedError, WireProblem)):
            # The traceback may quote SQL parameters (event bytes): only at DEBUG.
            log.error("event=append_failed method=%s error=%s.%s", method,
                      type(exc).__module__, type(exc).__name__)
            log.debug("event=append_failed_traceback method=%s", method, exc_info=True)
        context.abort(code, bounded(prefix + message))

    def _batch(self, raw: bytes) -> tuple[list[NewEvent], dict[str, int], int]:
        request = parse_request(ingest_pb2.AppendEventsRequest, raw)
        n = len(request.events)
        events, expected = decode_batch(request, self.limits)
        return events, expected, n

    def close(self) -> None:
        """Commit every batch already accepted, then stop the group commit (call after the
        gRPC server has stopped taking calls)."""
        if self._committer is not None:
            self._committer.stop()

    # --- RPCs -----------------------------------------------------------------------------
    def append_events(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        started = time.perf_counter()
        n = 0
        try:
            events, expected, n = self._batch(raw)
            results = self._append(events, expected)
        except Exception as exc:
            self._reject(context, exc, n, "AppendEvents")
            raise  # unreachable: abort raises
        elapsed = time.perf_counter() - started
        self.metrics.append_latency.observe(elapsed)
        log.info("event=batch_appended method=AppendEvents events=%d new=%d latency_ms=%.2f",
                 len(results), sum(not r.duplicate for r in results), elapsed * 1000)
        return bytes(ingest_pb2.AppendEventsResponse(results=_results(results)).SerializeToString())

    def append_event_stream(self, requests: Iterable[bytes], context: grpc.ServicerContext) -> bytes:
        results: list[AppendResult] = []
        for index, raw in enumerate(requests):
            started = time.perf_counter()
            n = 0
            try:
                events, expected, n = self._batch(raw)
                results.extend(self._append(events, expected))
            except Exception as exc:
                # Earlier batches are committed (each is its own transaction) and their ids
                # make a retry of the whole stream safe.
                self._reject(context, exc, n, "AppendEventStream", f"batches[{index}].")
                raise
            self.metrics.append_latency.observe(time.perf_counter() - started)
        log.info("event=stream_appended method=AppendEventStream events=%d new=%d",
                 len(results), sum(not r.duplicate for r in results))
        return bytes(ingest_pb2.AppendEventsResponse(results=_results(results)).SerializeToString())

    def read_stream(self, raw: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        try:
            request = parse_request(ingest_pb2.ReadStreamRequest, raw)
            if request.after_position < 0 or request.limit < 0:
                raise RejectedRequest(grpc.StatusCode.INVALID_ARGUMENT, "after_position",
                                      "after_position and limit must be >= 0", "bad_read")
        except (WireProblem, RejectedRequest) as exc:
            self._reject(context, exc, 0, "ReadStream")
            raise
        events: Iterable[StoredEvent]
        if request.stream_id:
            events = self.store.read_stream(request.stream_id)
        else:
            events = self.store.read(after=request.after_position, limit=request.limit or None)
        try:
            for event in events:
                yield stored_event_message(event).SerializeToString()
        except IntegrityError as exc:  # a corrupt row: say where, never what
            log.error("event=read_failed error=%s", type(exc).__name__)
            context.abort(grpc.StatusCode.DATA_LOSS, bounded(f"{type(exc).__name__}: {exc}"))

    def assign_variant(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            request = parse_request(ingest_pb2.AssignVariantRequest, raw)
            arms = _arms(request)
            with self._append_lock:
                arm, point, result = record_assignment(
                    self.store, request.ab_test_id, request.user_ref, arms, self._secret)
            if result.duplicate:
                self.metrics.events_duplicate.inc()
            else:
                self.metrics.events_ingested.labels(type="VariantAssigned").inc()
        except Exception as exc:
            self._reject(context, exc, 1, "AssignVariant")
            raise
        log.info("event=variant_assigned ab_test_id=%s duplicate=%s", request.ab_test_id,
                 result.duplicate)
        return bytes(ingest_pb2.AssignVariantResponse(
            variant=arm.name, bucket=point, event_id=str(result.event_id),
            position=result.position, duplicate=result.duplicate,
        ).SerializeToString())

    def handler(self) -> grpc.GenericRpcHandler:
        """The generic handler to add to a ``grpc.Server`` (bytes in, bytes out)."""
        return grpc.method_handlers_generic_handler(SERVICE, {
            "AppendEvents": grpc.unary_unary_rpc_method_handler(self.append_events),
            "AppendEventStream": grpc.stream_unary_rpc_method_handler(self.append_event_stream),
            "ReadStream": grpc.unary_stream_rpc_method_handler(self.read_stream),
            "AssignVariant": grpc.unary_unary_rpc_method_handler(self.assign_variant),
        })


def record_assignment(
    store: EventStore, ab_test_id: str, user_ref: str, arms: Sequence[Arm],
    secret: bytes | None = None,
) -> tuple[Arm, float, AppendResult]:
    """Assign ``user_ref`` and append the ``VariantAssigned`` event (idempotent per arms).

    ``secret`` defaults to the store's key-ring HMAC secret, so the daemon and the CLI
    assign identically.
    """
    if secret is None:
        keyring = getattr(store, "keyring", None)
        if keyring is None:
            raise ValueError("assignment needs the tenant's key ring (HMAC secret)")
        secret = bytes(keyring.hmac_secret)
    # The arm hashes the user_ref as sent (the original), as the gateway's routing does;
    # the store's gate keeps a pseudonym of a personal one (hermes_fed.privacy.pseudonyms, U4).
    arm, point = assign(secret, ab_test_id, user_ref, arms)
    event = NewEvent(
        stream_id=f"abtest-{ab_test_id}", type="VariantAssigned",
        data={"ab_test_id": ab_test_id, "user_ref": user_ref, "variant": arm.name},
        event_id=assignment_event_id(secret, ab_test_id, user_ref, arms),
        subject=user_ref,
    )
    (result,) = store.append([event])
    return arm, point, result


def _arms(request: ingest_pb2.AssignVariantRequest) -> list[Arm]:
    def bad(field: str, problem: str) -> RejectedRequest:
        return RejectedRequest(grpc.StatusCode.INVALID_ARGUMENT, field, problem, "bad_assignment")

    for name, longest in (("ab_test_id", MAX_TEST_ID), ("user_ref", MAX_SUBJECT)):
        value = getattr(request, name)
        if not value:
            raise bad(name, "required")
        if len(value) > longest:
            raise bad(name, f"longer than {longest} characters ({len(value)})")
    if not 2 <= len(request.arms) <= MAX_ARMS:
        raise bad("arms", f"an A/B test needs 2..{MAX_ARMS} arms, got {len(request.arms)}")
    arms = []
    for index, arm in enumerate(request.arms):
        # Checked here, not by Arm(), whose message quotes the name.
        if not arm.name:
            raise bad(f"arms[{index}].name", "required")
        if len(arm.name) > MAX_ARM_NAME:
            raise bad(f"arms[{index}].name",
                      f"longer than {MAX_ARM_NAME} characters ({len(arm.name)})")
        if not (math.isfinite(arm.weight) and arm.weight > 0):
            raise bad(f"arms[{index}]", f"weight must be finite and > 0, got {arm.weight:g}")
        arms.append(Arm(arm.name, arm.weight))
    if len({a.name for a in arms}) != len(arms):
        raise bad("arms", "arm names must be distinct")
    return arms
