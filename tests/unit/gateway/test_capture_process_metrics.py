"""The capture process's metrics: recorded in the child, counted into the gateway's registry."""

from __future__ import annotations

from collections import deque

from prometheus_client import generate_latest

from hermes_fed.events import NewEvent
from tenant_node.gateway.capture_process import Op, apply_ops, record_metrics
from tenant_node.gateway.metrics import GatewayMetrics
from tenant_node.ingest.metrics import NodeMetrics


def _sample(metrics: GatewayMetrics, line_start: str) -> float:
    text = generate_latest(metrics.registry).decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(line_start)]
    assert values, f"no {line_start!r}"
    return values[0]


def test_child_updates_replay_into_the_gateways_metrics() -> None:
    # Prepare: the child's metrics record into a sink; the gateway's are real
    sink: deque[Op] = deque()
    child, child_node = GatewayMetrics(), NodeMetrics()
    record_metrics(child, "gateway", sink)
    record_metrics(child_node, "node", sink)
    gateway = GatewayMetrics()
    gateway_node = NodeMetrics(gateway.registry)
    gateway.capture_commit.observe(0.5)  # the gateway's own commit, before

    # Execute: what the child's writer and gate do, then the replay
    child.capture_commit.observe(0.25)
    child.capture_batch.observe(3)
    child.capture_queue.set(7)
    child.wal_checkpoint_frames.inc(120)
    child_node.count_redactions([NewEvent("s-1", "X", {}, metadata={
        "redaction": {"entities": {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1}}})])
    apply_ops(list(sink), {"gateway": gateway, "node": gateway_node})

    # Assert: counted beside the gateway's own; the child's queue under its own gauge
    assert _sample(gateway, "hermes_gateway_capture_commit_seconds_count") == 2
    assert _sample(gateway, "hermes_gateway_capture_commit_seconds_sum") == 0.75
    assert _sample(gateway, "hermes_gateway_capture_batch_calls_sum") == 3
    assert _sample(gateway, "hermes_gateway_capture_process_queue") == 7
    assert _sample(gateway, "hermes_gateway_capture_queue") == 0
    assert _sample(gateway, "hermes_gateway_wal_checkpoint_frames_total") == 120
    assert _sample(gateway, 'hermes_node_redactions_total{entity_type="EMAIL_ADDRESS"}') == 2
    assert _sample(gateway, 'hermes_node_redactions_total{entity_type="PHONE_NUMBER"}') == 1
    # and nothing was counted in the child's own registries
    assert "hermes_gateway_capture_commit_seconds_count 0.0" in \
        generate_latest(child.registry).decode()
