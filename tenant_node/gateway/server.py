"""``hermes-fed node gateway``: wiring and lifecycle.

Start-up puts the gate before the door, as the ingest daemon does: the store opens behind
the node's redaction gate, the capture writer starts, the current traffic plan is read
from the log (its adapters loaded upstream), and only then does uvicorn accept calls and
``/health`` answer. SIGTERM/SIGINT: uvicorn stops accepting, in-flight calls finish (their
captures commit), the writer drains, the store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import ssl
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePath
from typing import Any

from hermes_fed.errors import ConfigError, HermesFedError
from hermes_fed.serving.assembly import TurnDigester
from tenant_node.config import NodeConfig
from tenant_node.ingest.metrics import NodeMetrics

from .app import GatewayApp
from .calls import ChatCalls
from .capture import RedactAhead, SessionCache, build_writer
from .capture_process import CaptureProcess
from .metrics import GatewayMetrics
from .routing import PlanRouter
from .upstream import Upstream

log = logging.getLogger(__name__)


class GatewayServer:
    """One running gateway of one tenant node."""

    def __init__(self, config: NodeConfig) -> None:
        if config.gateway.capture_sync == "behind" \
                and not config.resolved_store_url.startswith("sqlite:"):
            raise ConfigError("gateway.capture_sync = 'behind' is for a SQLite log (it "
                              "fsyncs the WAL); a PostgreSQL server decides its own "
                              "durability (synchronous_commit)")
        self.config = config
        self.metrics = GatewayMetrics()
        self.gateway: GatewayApp | None = None
        self._server: Any = None
        self._stop_requested = False

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Any) -> AsyncIterator[None]:
        from tenant_node.ingest.runtime import NodeGate

        config, gw = self.config, self.config.gateway
        # Redactions are counted in the gateway's registry (hermes_node_redactions).
        node_metrics = NodeMetrics(self.metrics.registry)
        store, writer = build_writer(config, self.metrics, node_metrics)
        if store.keyring is None:
            raise ConfigError("the gateway needs the node's key ring")
        secret = store.keyring.hmac_secret
        reader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gateway-reader")
        writer.start()
        if gw.capture_process:
            # Spawned now, it loads while the gateway does; until it reports ready the
            # gateway captures every call itself.
            process = CaptureProcess(config, {"gateway": self.metrics, "node": node_metrics},
                                     self.metrics.capture_process_up.set,
                                     self.metrics.capture_process_starts.inc)
            process.start(asyncio.get_running_loop())
            writer.attach(process)
        upstream = Upstream(gw.upstream_url, gw.upstream_timeout_s, gw.resolved_upstream_key())
        adapters = PurePath(gw.upstream_adapters_dir) if gw.upstream_adapters_dir \
            else Path(config.resolved_adapters_dir).resolve()
        router = PlanRouter(store, upstream, reader, self.metrics, secret=secret,
                            base_model=gw.base_model, model_name=gw.model_name,
                            upstream_adapters_dir=adapters)
        try:
            await router.refresh()
        except Exception as exc:  # the upstream may start after the gateway
            log.warning("event=plan_not_applied_at_start error=%s", exc)
        ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-redact-ahead") \
            if gw.redact_ahead and isinstance(store.gate, NodeGate) else None
        calls = ChatCalls(gw, router, upstream, writer,
                          SessionCache(store, gw.session_cache, reader), TurnDigester(secret),
                          self.metrics,
                          RedactAhead(store.gate, ahead) if ahead is not None else None)
        assert self.gateway is not None
        self.gateway.calls = calls
        watcher = asyncio.create_task(router.watch(gw.plan_poll_s))
        log.info("event=gateway_started tenant=%s listen=%s upstream=%s tls=%s plan=%s head=%d "
                 "capture_sync=%s capture_process=%s", config.tenant_id, gw.listen,
                 gw.upstream_url, config.tls.enabled,
                 router.plan.test_id if router.plan else None, store.head(), gw.capture_sync,
                 gw.capture_process)
        # What start-up built (the recognizers, presidio, the name lexicon: ~170,000
        # objects) lives as long as the process: frozen, it is left out of the collector's
        # full passes, each of which otherwise held the event loop ~0.15 s here.
        gc.collect()
        gc.freeze()
        self.metrics.gc_frozen.set(gc.get_freeze_count())
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            writer.stop()  # every submitted capture commits first
            await upstream.close()
            reader.shutdown(wait=True)
            if ahead is not None:
                ahead.shutdown(wait=True, cancel_futures=True)
            head = store.head()
            store.close()
            gc.unfreeze()  # for a process that goes on without this gateway
            log.info("event=gateway_stopped tenant=%s head=%d", config.tenant_id, head)

    def _health(self) -> dict[str, Any]:
        calls = self.gateway.calls if self.gateway is not None else None
        if calls is None:
            return {"plan": None}
        router = calls.router
        return {"plan": router.plan.test_id if router.plan else None,
                "plan_version": router.plan_version, "plan_pending": router.pending,
                "capture_process": calls.writer.process_health()}

    def build(self) -> Any:
        """The ASGI app (the store opens in its lifespan)."""
        self.gateway = GatewayApp(self.metrics, self.config.resolved_gateway_token(),
                                  self._health, lifespan=self._lifespan)
        return self.gateway.app

    def run(self) -> None:
        import uvicorn

        config, gw = self.config, self.config.gateway
        tls = config.tls
        options: dict[str, Any] = {}
        if tls.enabled:
            options.update(ssl_certfile=tls.cert_file, ssl_keyfile=tls.key_file)
            if tls.client_ca_file:
                options.update(ssl_ca_certs=tls.client_ca_file, ssl_cert_reqs=ssl.CERT_REQUIRED)
        server_config = uvicorn.Config(
            self.build(), host=gw.host, port=gw.port, log_level="warning", access_log=False,
            lifespan="on", timeout_graceful_shutdown=int(config.shutdown_grace_s) or None,
            **options)
        self._server = uvicorn.Server(server_config)
        if self._stop_requested:
            return
        self._server.run()
        if not self._server.started and not self._stop_requested:
            # uvicorn logged the start-up's traceback and returned: not a clean exit
            raise HermesFedError("the gateway did not start (its start-up failed: the "
                                 "error is logged above)")

    def request_stop(self) -> None:
        self._stop_requested = True
        if self._server is not None:
            self._server.should_exit = True
