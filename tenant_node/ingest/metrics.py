"""Prometheus metrics of the ingest daemon, in a registry of their own.

Labels carry only catalog names (event types, status codes, entity types), never data.
"""

from __future__ import annotations

from collections import Counter as Counter_
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from hermes_fed.events import NewEvent

# Append latency spans ~1 ms (a small batch, redaction-free) to seconds (large batches).
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class NodeMetrics:
    """The counters and histograms ``hermes-fed node serve`` exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_ingested = Counter(
            "hermes_node_events_ingested", "Events newly written to the log", ["type"], registry=r)
        self.events_duplicate = Counter(
            "hermes_node_events_duplicate", "Events re-sent with a known event_id (no-ops)",
            registry=r)
        self.events_rejected = Counter(
            "hermes_node_events_rejected", "Events in rejected batches, by status code",
            ["reason"], registry=r)
        self.redactions = Counter(
            "hermes_node_redactions", "Spans redacted before append, by entity type",
            ["entity_type"], registry=r)
        self.append_latency = Histogram(
            "hermes_node_append_seconds", "AppendEvents latency (validate+redact+append)",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.placeholder_conflicts = Counter(
            "hermes_node_placeholder_conflicts",
            "Appends numbered again: another writer of the log took a placeholder number of "
            "their session first", registry=r)
        self.log_head = Gauge("hermes_node_log_head", "Highest position in the log", registry=r)
        self.group_batches = Histogram(
            "hermes_node_group_commit_batches", "AppendEvents batches per group commit",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 512), registry=r)
        self.append_queue = Gauge(
            "hermes_node_append_queue", "Batches waiting for the group commit", registry=r)
        self.projection_lag = Gauge(
            "hermes_node_projection_lag", "Events the projections are behind the head",
            ["projection"], registry=r)
        self.gc_frozen = Gauge(
            "hermes_node_gc_frozen_objects",
            "Objects built at start-up that the garbage collector's full passes skip",
            registry=r)

    def count_redactions(self, events: Sequence[NewEvent]) -> None:
        """Count redacted spans from each event's ``metadata["redaction"]`` report (summed
        per batch first: a labelled child per event cost a tenth of the append)."""
        total: Counter_[str] = Counter_()
        for event in events:
            total.update(_counts(event.metadata.get("redaction")))
        for entity_type, n in total.items():
            self.redactions.labels(entity_type=entity_type).inc(n)

    def count_ingested(self, types: Sequence[str]) -> None:
        """Count newly written events by type (one labelled child per type and batch)."""
        for event_type, n in Counter_(types).items():
            self.events_ingested.labels(type=event_type).inc(n)

    def serve(self, host: str, port: int) -> Any:
        """Start the HTTP exporter thread; returns the server (``.shutdown()`` stops it)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server


def _counts(report: Any) -> dict[str, int]:
    """Entity counts of a redaction report (``hermes_fed.privacy.redactor``: ``entities``)."""
    if not isinstance(report, Mapping):
        return {}
    counts = report.get("entities")
    if not isinstance(counts, Mapping):
        return {}
    return {str(k): v for k, v in counts.items() if isinstance(v, int) and v > 0}
