"""The webhook on promotion and rollback (a receiver on 127.0.0.1), and the gauges."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prometheus_client import generate_latest

from coordinator.autopilot.config import AutopilotConfig
from coordinator.autopilot.notify import AutopilotMetrics
from coordinator.autopilot.runner import Autopilot
from coordinator.logs.registry import AdapterRegistry
from tests.unit.coordinator.autopilot_nodes import ScriptedNodes, SimClock
from tests.unit.coordinator.test_autopilot_runner import CFG


class _Receiver(BaseHTTPRequestHandler):
    notes: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).notes.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.notes = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def _config(url: str) -> AutopilotConfig:
    return AutopilotConfig(**{**CFG.to_dict(), "webhook_url": url})


def _run(root: Path, url: str, beats: int) -> tuple[Autopilot, AdapterRegistry]:
    registry = AdapterRegistry.open(root)
    clock = SimClock()
    nodes = ScriptedNodes(registry, train={"acme": True, "globex": True}, train_versions=2,
                          effects={"v2": -0.2})
    autopilot = Autopilot(registry, nodes, _config(url), clock)
    for _ in range(beats):
        autopilot.run_until_idle()
        clock.advance(hours=6)
    autopilot.notifier.join()
    return autopilot, registry


def test_promotions_and_rollbacks_are_posted_as_json(tmp_path: Path, receiver: str) -> None:
    autopilot, registry = _run(tmp_path, receiver, beats=10)
    try:
        state = autopilot.state()
    finally:
        registry.close()
    notes = [(n["event"], n.get("stage"), n["version"][:2]) for n in _Receiver.notes]
    assert notes == [("promoted", "canary", "v1"), ("promoted", "ab", "v1"),
                     ("promoted", "production", "v1"), ("promoted", "canary", "v2"),
                     ("rolled_back", None, "v2")]
    rolled = _Receiver.notes[-1]
    assert "canary guardrail breached" in rolled["reason"] and rolled["cycle"] == 2
    assert rolled["to_version"] == state.registry.production


def test_a_dead_webhook_is_logged_and_never_holds_the_cycle(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    with caplog.at_level(logging.WARNING, logger="coordinator.autopilot.notify"):
        autopilot, registry = _run(tmp_path, dead, beats=6)
    try:
        state = autopilot.state()
    finally:
        registry.close()
    assert state.registry.production is not None  # the cycle went on to production
    assert "action=webhook event=promoted status=failed error=URLError" in caplog.text


def test_the_gauges_follow_the_state(tmp_path: Path) -> None:
    autopilot, registry = _run(tmp_path, "", beats=6)
    try:
        metrics = AutopilotMetrics()
        state = autopilot.state()
        metrics.update(state)
    finally:
        registry.close()
    text = generate_latest(metrics.registry).decode()
    assert 'hermes_fed_autopilot_cycles_ended{outcome="production"} 1.0' in text
    assert "hermes_fed_autopilot_cycle 2.0" in text
    assert f'hermes_fed_autopilot_phase{{phase="{state.phase.value}"}} 1.0' in text
    assert text.count("hermes_fed_autopilot_phase{") == 7  # one per phase, the others 0
