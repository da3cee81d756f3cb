"""Telling people: a webhook on promotion and rollback, and Prometheus gauges.

The webhook POSTs one JSON object per promotion or rollback to ``webhook_url`` from a
daemon thread: a slow or failing receiver is logged and never holds the cycle up (the log,
not the webhook, is the record). The metrics are a private ``CollectorRegistry`` the
``coordinator autopilot --metrics-port`` command serves.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from .state import AutopilotState, Phase

logger = logging.getLogger(__name__)


class Notifier:
    """POST ``note`` as JSON to ``url`` (nothing when ``url`` is empty)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self.threads: list[threading.Thread] = []

    def notify(self, note: Mapping[str, Any]) -> None:
        if not self.url:
            return
        thread = threading.Thread(target=self._post, args=(dict(note),), daemon=True,
                                  name="autopilot-webhook")
        self.threads.append(thread)
        thread.start()

    def _post(self, note: dict[str, Any]) -> None:
        body = json.dumps(note, default=str).encode()
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                logger.info("action=webhook event=%s status=%d", note.get("event"), reply.status)
        except (OSError, ValueError) as exc:
            logger.warning("action=webhook event=%s status=failed error=%s",
                           note.get("event"), type(exc).__name__)

    def join(self, timeout: float = 10.0) -> None:
        """Wait for the posts in flight (tests, and a clean shutdown)."""
        for thread in self.threads:
            thread.join(timeout)


class AutopilotMetrics:
    """``hermes_fed_autopilot_*`` gauges, refreshed from the folded state."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.cycle = Gauge("hermes_fed_autopilot_cycle", "current cycle number",
                           registry=self.registry)
        self.phase = Gauge("hermes_fed_autopilot_phase", "1 for the current phase",
                           ["phase"], registry=self.registry)
        self.pending = Gauge("hermes_fed_autopilot_pending_step", "1 while a step is pending",
                             registry=self.registry)
        self.not_acked = Gauge("hermes_fed_autopilot_nodes_not_acknowledging",
                               "nodes that did not apply the latest plan", registry=self.registry)
        self.steps = Counter("hermes_fed_autopilot_steps", "steps taken by this process",
                             registry=self.registry)
        self.cycles = Gauge("hermes_fed_autopilot_cycles_ended", "cycles ended, by outcome",
                            ["outcome"], registry=self.registry)

    def update(self, state: AutopilotState) -> None:
        self.cycle.set(state.cycle)
        for phase in Phase:
            self.phase.labels(phase=phase.value).set(1.0 if state.phase is phase else 0.0)
        self.pending.set(1.0 if state.pending is not None else 0.0)
        self.not_acked.set(len(state.deploy_failed))
        for outcome in ("production", "rolled_back", "failed"):
            self.cycles.labels(outcome=outcome).set(state.ended.get(outcome, 0))
