"""The node runtime: key ring, redaction gate, store, gRPC server, health, metrics, projections.

Start-up order puts the gate before the door: the store opens with the redactor as its gate
(so no code path appends unredacted data, invariant 7), then the gRPC server starts, and
only then does health report SERVING. Shutdown reverses it: health goes NOT_SERVING, the
server stops taking calls and gives in-flight ones ``shutdown_grace_s`` to finish (their
appends complete or roll back whole), projections catch up one last time, the store closes.
"""

from __future__ import annotations

import gc
import importlib
import logging
import threading
import time
from collections.abc import Collection, Sequence
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy import exc as sa_exc

from hermes_fed.errors import ConfigError, OperationalError
from hermes_fed.events import NewEvent
from hermes_fed.store import Keyring, SqlEventStore, open_store
from hermes_fed.store.port import GatedBatch
from tenant_node.config import NodeConfig
from tenant_node.ingest.auth import BearerTokenInterceptor
from tenant_node.ingest.metrics import NodeMetrics
from tenant_node.ingest.service import SERVICE, IngestService
from tenant_node.ingest.validation import IngestLimits

if TYPE_CHECKING:
    from hermes_fed.privacy import Redactor

log = logging.getLogger(__name__)

_ENVELOPE_SLACK = 64 * 1024


class NodeGate:
    """The node's redaction gate (a store :data:`Gate`), counting what it redacted. On a
    durable (staged) index the batch's new placeholder rows travel with it into the append's
    transaction. :meth:`prewarm` detects texts ahead of the append that will carry them."""

    def __init__(self, redactor: Redactor, placeholder_index: Any, metrics: NodeMetrics) -> None:
        from hermes_fed.privacy.placeholder_store import staged_gate
        from hermes_fed.privacy.placeholders import StagedPlaceholderIndex

        self.redactor = redactor
        self._metrics = metrics
        self._index = placeholder_index if isinstance(placeholder_index,
                                                      StagedPlaceholderIndex) else None
        self._staged = staged_gate(redactor, placeholder_index,
                                   metrics.placeholder_conflicts.inc) \
            if self._index is not None else None

    def __call__(self, events: Sequence[NewEvent]) -> Sequence[NewEvent] | GatedBatch:
        if self._staged is not None:
            batch = self._staged(events)
            assert isinstance(batch, GatedBatch)
            self._metrics.count_redactions(batch.events)
            return batch
        redacted = self.redactor.redact_new_events(events)
        self._metrics.count_redactions(redacted)
        return redacted

    def prewarm(self, value: Any, key: str | None = None, depth: int = 0) -> None:
        """See :meth:`hermes_fed.privacy.Redactor.prewarm`."""
        self.redactor.prewarm(value, key, depth)

    def forget(self, session_keys: Collection[str]) -> None:
        """Sessions another writer of the log may have numbered placeholders in since this
        gate last did: their numbers are read again at their next batch, instead of a
        stale number colliding in the append and the batch being redacted again."""
        if self._index is not None and session_keys:
            self._index.forget(session_keys)


def build_gate(
    config: NodeConfig, secret: bytes, metrics: NodeMetrics, placeholder_index: Any = None
) -> NodeGate:
    """The node's redaction gate on ``placeholder_index`` (see :class:`NodeGate`)."""
    from hermes_fed.privacy import RedactionConfig, Redactor

    redactor = Redactor(RedactionConfig.from_mapping(config.redaction), secret, placeholder_index)
    return NodeGate(redactor, placeholder_index, metrics)


def open_node_store(config: NodeConfig, metrics: NodeMetrics | None = None, *,
                    autocheckpoint: bool = True) -> SqlEventStore:
    """Open the tenant's store behind the redaction gate (used by serve, import, export).
    ``autocheckpoint=False``: a SQLite log's commits leave WAL checkpoints to the caller's
    :class:`~hermes_fed.store.wal_checkpoint.WalCheckpointer` (the gateway)."""
    keyring_path = config.resolved_keyring_path
    keyring_path.parent.mkdir(parents=True, exist_ok=True)
    keyring = Keyring.load_or_create(keyring_path, config.tenant_id)
    url = config.resolved_store_url
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    from hermes_fed.privacy.placeholder_store import StorePlaceholderIndex

    store = open_store(url, config.tenant_id, keyring=keyring, schema=config.store_schema,
                       synchronous=config.sqlite_synchronous, autocheckpoint=autocheckpoint)
    # Placeholder numbers live in the log so a session's <EMAIL_ADDRESS_1> stays the same
    # across daemon restarts and across processes (serve, import, train); a batch's new
    # numbers are written in its append's transaction.
    index = StorePlaceholderIndex(store, keyring)
    store.gate = build_gate(config, keyring.hmac_secret, metrics or NodeMetrics(), index)
    return store


def open_existing_node_store(config: NodeConfig) -> SqlEventStore:
    """:func:`open_node_store` for commands that only read (export, status): the log and its
    key ring must exist already; nothing is created."""
    from hermes_fed.errors import KeyringError
    from hermes_fed.store.location import require_existing_log

    require_existing_log(config.resolved_store_url, config.tenant_id, config.store_schema)
    if not config.resolved_keyring_path.is_file():
        raise KeyringError(f"no key ring at {config.resolved_keyring_path}: the log cannot be "
                           "decrypted without the key ring it was written with")
    return open_node_store(config)


def node_projection(target: str, config: NodeConfig | None = None) -> Any:
    """The projection ``module:Class`` names, built without arguments; the quality
    projection is built with the node's ``[quality]`` table, so the daemon keeps the read
    model under the same configuration (hence the same version) as ``node status``."""
    from hermes_fed.quality.projection import QualityProjection

    module_name, _, attr = target.partition(":")
    try:
        kind = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"projections: cannot load {target!r}: {exc}") from None
    if isinstance(kind, type) and issubclass(kind, QualityProjection) and config is not None:
        return kind(config.quality)
    return kind()


def _short(exc: BaseException) -> str:
    """The driver's own one-line reason (SQLAlchemy's text would append the SQL and its
    parameters, which may hold event data)."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).splitlines()
    return (lines[0][:120] if lines else "") or type(orig).__name__


class ProjectionPump(threading.Thread):
    """Keeps registered projections caught up behind the log (read models lag, never lead)."""

    def __init__(self, store: SqlEventStore, targets: Sequence[str], interval_s: float,
                 metrics: NodeMetrics, config: NodeConfig | None = None) -> None:
        super().__init__(name="projections", daemon=True)
        from hermes_fed.projections import ProjectionRunner

        self._runners = [ProjectionRunner(store, node_projection(t, config)) for t in targets]
        self._store = store
        self._interval = interval_s
        self._metrics = metrics
        self.stopping = threading.Event()

    def catch_up(self) -> None:
        head = self._store.head()
        for runner in self._runners:
            try:
                runner.catch_up()
                lag = head - runner.checkpoint()
            except (OperationalError, sa_exc.OperationalError) as exc:
                # Transient (a writer holds the SQLite lock past busy_timeout, PostgreSQL
                # restarting): the batch rolled back with its checkpoint, so the next tick
                # resumes where this one stopped. Not an error worth a traceback.
                log.warning("event=projection_deferred projection=%s reason=%s retry_in_s=%s",
                            runner.projection.name, _short(exc), self._interval)
                continue
            except Exception as exc:  # a bad projection must not stop ingest
                log.error("event=projection_failed projection=%s error=%s",
                          runner.projection.name, type(exc).__name__, exc_info=True)
                continue
            self._metrics.projection_lag.labels(projection=runner.projection.name).set(
                max(lag, 0))

    def run(self) -> None:
        while not self.stopping.wait(self._interval):
            self.catch_up()

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join()
        self.catch_up()


class NodeRuntime:
    """One running tenant node. ``start()`` then ``wait()``; ``request_stop()`` from a signal."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.metrics = NodeMetrics()
        self.store: SqlEventStore | None = None
        self.server: grpc.Server | None = None
        self.service: IngestService | None = None
        self.health = health.HealthServicer()
        self.port = 0
        self.metrics_port = 0
        self._metrics_server: Any = None
        self._pump: ProjectionPump | None = None
        self._stop = threading.Event()

    def _credentials_bound(self, server: grpc.Server) -> int:
        tls = self.config.tls
        if not tls.enabled:
            return int(server.add_insecure_port(self.config.listen))
        key = Path(tls.key_file).read_bytes()
        cert = Path(tls.cert_file).read_bytes()
        client_ca = Path(tls.client_ca_file).read_bytes() if tls.client_ca_file else None
        credentials = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None)
        return int(server.add_secure_port(self.config.listen, credentials))

    def start(self) -> int:
        """Open the store, start metrics, projections and the gRPC server; returns the port."""
        config = self.config
        self.store = store = open_node_store(config, self.metrics)
        if store.keyring is None:
            raise ConfigError("the node needs a key ring")
        self.metrics.log_head.set(store.head())
        if config.metrics_port:
            self._metrics_server = self.metrics.serve(config.metrics_host, config.metrics_port)
            self.metrics_port = int(self._metrics_server.server_port)
        if config.projections:
            self._pump = ProjectionPump(store, config.projections, config.projection_interval_s,
                                        self.metrics, config)
            self._pump.catch_up()
            self._pump.start()
        limits = IngestLimits(config.tenant_id, config.max_event_bytes, config.max_batch_events)
        self.service = service = IngestService(store, limits, self.metrics,
                                               store.keyring.hmac_secret,
                                               group_commit=config.group_commit)
        max_message = min(config.max_event_bytes * config.max_batch_events + _ENVELOPE_SLACK,
                          2**31 - 1)
        interceptor = BearerTokenInterceptor(
            config.resolved_token(),
            on_reject=lambda _m: self.metrics.events_rejected.labels(
                reason="unauthenticated").inc())
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="ingest"),
            interceptors=[interceptor],
            options=[("grpc.max_receive_message_length", max_message),
                     ("grpc.so_reuseport", 0)],
        )
        server.add_generic_rpc_handlers((service.handler(),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        try:
            self.port = self._credentials_bound(server)
        except RuntimeError:  # grpc raises on a failed bind (port taken, bad address)
            self.port = 0
        if not self.port:
            raise OperationalError(f"cannot listen on {config.listen} (in use or invalid)")
        # A full (generation 2) collection walks every tracked object; start-up leaves
        # ~170,000 (recognizers, presidio, the name lexicon) and a pass over them held the
        # GIL, hence every ingest worker, 150-300 ms. They live as long as the daemon.
        gc.collect()
        gc.freeze()
        self.metrics.gc_frozen.set(gc.get_freeze_count())
        server.start()
        self.server = server
        for name in ("", SERVICE):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "event=node_started tenant=%s listen=%s port=%d tls=%s metrics_port=%d head=%d "
            "projections=%d", config.tenant_id, config.listen, self.port, config.tls.enabled,
            self.metrics_port, store.head(), len(config.projections))
        return self.port

    def request_stop(self) -> None:
        """Ask :meth:`wait` to return (safe from a signal handler)."""
        self._stop.set()

    def wait(self) -> None:
        while not self._stop.wait(0.5):
            pass

    def stop(self) -> None:
        """Graceful shutdown: refuse new calls, finish in-flight batches, close the store."""
        started = time.monotonic()
        self.health.enter_graceful_shutdown()
        if self.server is not None:
            self.server.stop(self.config.shutdown_grace_s).wait()
        if self.service is not None:
            self.service.close()
        if self._pump is not None:
            self._pump.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        head = self.store.head() if self.store is not None else 0
        if self.store is not None:
            self.store.close()
        gc.unfreeze()  # for a process that goes on without this node (tests, `node run`)
        log.info("event=node_stopped tenant=%s head=%d shutdown_ms=%.0f", self.config.tenant_id,
                 head, (time.monotonic() - started) * 1000)
