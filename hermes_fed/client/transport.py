"""gRPC calls to a tenant node with retry and back-off.

Retries only what gRPC says is transient (``UNAVAILABLE``, ``DEADLINE_EXCEEDED``), with
capped exponential back-off and full jitter (Brooker, "Exponential Backoff And Jitter",
AWS Architecture Blog, 2015): attempt *k* waits ``uniform(0, min(cap, base * 2^k))``. A
retried append is safe because event ids are idempotency keys (invariant 3). Everything
else (a rejected batch, a wrong token) is raised at once as :class:`IngestError`.
"""

from __future__ import annotations

import importlib
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from hermes_fed.errors import HermesFedError

# The generated modules are imported dynamically: they live in the ``protos`` package,
# outside the strictly typed ``hermes_fed`` (their stubs do not pass ``mypy --strict``).
events_pb2: Any = importlib.import_module("protos.hermes_fed.v1.events_pb2")
ingest_pb2: Any = importlib.import_module("protos.hermes_fed.v1.ingest_pb2")
health_pb2: Any = importlib.import_module("grpc_health.v1.health_pb2")

SERVICE = "hermes_fed.v1.IngestService"
RETRYABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})


class IngestError(HermesFedError):
    """The node refused a call; ``code`` is the gRPC status name, ``details`` its message."""

    def __init__(self, code: str, details: str, attempts: int = 1) -> None:
        super().__init__(f"{code}: {details}" + (f" (after {attempts} attempts)"
                                                 if attempts > 1 else ""))
        self.code = code
        self.details = details
        self.attempts = attempts

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a call is retried."""

    max_attempts: int = field(default=6, metadata={"help": "attempts per call; default 6"})
    initial_backoff_s: float = field(
        default=0.05, metadata={"help": "back-off cap of the first retry; default 0.05 s"})
    max_backoff_s: float = field(
        default=2.0, metadata={"help": "largest back-off; default 2 s"})
    timeout_s: float = field(
        default=10.0, metadata={"help": "deadline of each attempt; default 10 s"})

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not 0 < self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError(f"need 0 < initial_backoff_s <= max_backoff_s, got "
                             f"{self.initial_backoff_s} and {self.max_backoff_s}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter back-off before retry number ``attempt`` (1-based)."""
        cap = min(self.max_backoff_s, self.initial_backoff_s * 2.0 ** (attempt - 1))
        return rng.uniform(0.0, cap)


def _identity(data: bytes) -> bytes:
    return data


class NodeTransport:
    """The four ingest RPCs plus health, over one channel, with the bearer token attached."""

    def __init__(
        self,
        target: str,
        token: str,
        *,
        root_certificates: bytes | None = None,
        retry: RetryPolicy | None = None,
        channel: grpc.Channel | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ) -> None:
        if channel is None:
            if root_certificates is not None:
                creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
                channel = grpc.secure_channel(target, creds)
            else:
                channel = grpc.insecure_channel(target)
        self.channel = channel
        self.retry = retry or RetryPolicy()
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._sleep = sleep
        self._rng = random.Random(seed)
        path = f"/{SERVICE}/"
        self._append = channel.unary_unary(path + "AppendEvents", _identity, _identity)
        self._stream = channel.stream_unary(path + "AppendEventStream", _identity, _identity)
        self._read = channel.unary_stream(path + "ReadStream", _identity, _identity)
        self._assign = channel.unary_unary(path + "AssignVariant", _identity, _identity)
        self._health = channel.unary_unary("/grpc.health.v1.Health/Check", _identity, _identity)

    def _call(self, method: Callable[..., Any], request: bytes) -> bytes:
        attempt = 0
        while True:
            attempt += 1
            try:
                response: bytes = method(request, timeout=self.retry.timeout_s,
                                         metadata=self._metadata)
                return response
            except grpc.RpcError as exc:
                code = exc.code().name if exc.code() is not None else "UNKNOWN"
                if code not in RETRYABLE or attempt >= self.retry.max_attempts:
                    raise IngestError(code, exc.details() or "", attempt) from None
            self._sleep(self.retry.backoff(attempt, self._rng))

    def append_events(self, request: Any) -> Any:
        raw = self._call(self._append, request.SerializeToString())
        return ingest_pb2.AppendEventsResponse.FromString(raw)

    def append_raw(self, raw: bytes) -> bytes:
        """Send already-encoded bytes (for tests of the bad-input contract)."""
        return self._call(self._append, raw)

    def append_stream(self, requests: Sequence[Any]) -> Any:
        """Client-streaming append of several batches (each its own transaction)."""
        payloads = [r.SerializeToString() for r in requests]
        raw = self._call(lambda _r, **kw: self._stream(iter(payloads), **kw), b"")
        return ingest_pb2.AppendEventsResponse.FromString(raw)

    def read(self, request: Any) -> Iterator[Any]:
        try:
            for raw in self._read(request.SerializeToString(), timeout=self.retry.timeout_s,
                                  metadata=self._metadata):
                yield events_pb2.StoredEventMessage.FromString(raw)
        except grpc.RpcError as exc:
            raise IngestError(exc.code().name, exc.details() or "") from None

    def assign_variant(self, request: Any) -> Any:
        raw = self._call(self._assign, request.SerializeToString())
        return ingest_pb2.AssignVariantResponse.FromString(raw)

    def serving(self, timeout_s: float = 1.0) -> bool:
        """One health check: is the node SERVING?"""
        try:
            raw = self._health(health_pb2.HealthCheckRequest().SerializeToString(),
                               timeout=timeout_s)
        except grpc.RpcError:
            return False
        status = health_pb2.HealthCheckResponse.FromString(raw).status
        return bool(status == health_pb2.HealthCheckResponse.SERVING)

    def wait_until_serving(self, timeout_s: float = 30.0) -> None:
        """Poll the health service until SERVING; raise :class:`IngestError` on timeout."""
        deadline = time.monotonic() + timeout_s
        delay = 0.01
        while time.monotonic() < deadline:
            try:
                grpc.channel_ready_future(self.channel).result(
                    timeout=max(0.01, min(1.0, deadline - time.monotonic())))
            except grpc.FutureTimeoutError:
                continue
            if self.serving():
                return
            self._sleep(delay)  # channel up, service not yet SERVING: poll again
            delay = min(delay * 2, 0.2)
        raise IngestError("UNAVAILABLE", f"node not SERVING after {timeout_s} s")

    def close(self) -> None:
        self.channel.close()
