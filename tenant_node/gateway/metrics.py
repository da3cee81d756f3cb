"""Prometheus metrics of the gateway, in a registry of their own (served at ``/metrics``).

Labels carry endpoint names, status codes, error kinds, feedback signals and the plan's
test id, arm and version: never user text, user refs or session ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            10.0, 30.0, 60.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class GatewayMetrics:
    """The counters, gauges and histograms ``hermes-fed node gateway`` exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("hermes_gateway_requests", "Requests answered, by endpoint and "
                                "HTTP status", ["endpoint", "status"], registry=r)
        self.latency = Histogram("hermes_gateway_request_seconds", "Time from request to the "
                                 "answer's release (the whole stream for stream: true)",
                                 ["endpoint", "stream"], buckets=_LATENCY, registry=r)
        self.upstream_errors = Counter("hermes_gateway_upstream_errors", "Upstream failures by "
                                       "kind", ["kind"], registry=r)
        self.capture_lag = Histogram("hermes_gateway_capture_lag_seconds", "From the upstream's "
                                     "answer to its capture being durable", buckets=_LATENCY,
                                     registry=r)
        self.capture_commit = Histogram("hermes_gateway_capture_commit_seconds", "One group "
                                        "commit: redaction + append + commit", buckets=_LATENCY,
                                        registry=r)
        self.capture_batch = Histogram("hermes_gateway_capture_batch_calls", "Captures per group "
                                       "commit", buckets=_BATCH, registry=r)
        self.capture_sync_lag = Histogram("hermes_gateway_capture_sync_lag_seconds", "With "
                                          "capture_sync = behind: from a group's commit to "
                                          "the WAL fsync covering it (its power-cut window)",
                                          buckets=_LATENCY, registry=r)
        self.capture_unsynced = Gauge("hermes_gateway_capture_unsynced_commits", "With "
                                      "capture_sync = behind: group commits answered and not "
                                      "yet covered by a WAL fsync", registry=r)
        self.capture_inline = Counter("hermes_gateway_capture_inline", "Captures of a lone "
                                      "call committed on the event loop's thread (no group to "
                                      "join)", registry=r)
        self.capture_inline_busy = Counter("hermes_gateway_capture_inline_busy", "Lone "
                                           "captures handed to the writer because another "
                                           "process held the log's write lock",
                                           registry=r)
        self.wal_checkpoint = Histogram("hermes_gateway_wal_checkpoint_seconds", "One WAL "
                                        "checkpoint on the gateway's checkpoint thread (a "
                                        "SQLite log; never on a call's path)",
                                        buckets=_LATENCY, registry=r)
        self.wal_checkpoint_frames = Counter("hermes_gateway_wal_checkpoint_frames", "WAL "
                                             "frames copied into the database by the "
                                             "gateway's checkpoints", registry=r)
        self.capture_queue = Gauge("hermes_gateway_capture_queue", "Captures waiting for the "
                                   "writer", registry=r)
        self.capture_process_up = Gauge("hermes_gateway_capture_process_up", "1 while the "
                                        "capture process takes captures (busy periods' "
                                        "redaction and appends on a second core)", registry=r)
        self.capture_process_calls = Counter("hermes_gateway_capture_process_calls", "Captures "
                                             "committed by the capture process", registry=r)
        self.capture_process_starts = Counter("hermes_gateway_capture_process_starts",
                                              "Capture processes started (the first, and "
                                              "one after each that ended)", registry=r)
        self.capture_process_queue = Gauge("hermes_gateway_capture_process_queue", "Captures "
                                           "waiting for the capture process's writer",
                                           registry=r)
        self.capture_failures = Counter("hermes_gateway_capture_failures", "Answered calls "
                                        "whose capture failed (the client got an error)",
                                        registry=r)
        self.arm_requests = Counter("hermes_gateway_arm_requests", "Chat calls routed, by "
                                    "plan test, arm and version",
                                    ["test_id", "arm", "version"], registry=r)
        self.no_user = Counter("hermes_gateway_requests_without_user", "Chat calls without a "
                               "user (sent to the production arm)", registry=r)
        self.retries = Counter("hermes_gateway_retries_detected", "Re-sent user messages "
                               "recorded as RetryRequested", registry=r)
        self.feedback = Counter("hermes_gateway_feedback", "Feedback recorded, by signal",
                                ["signal"], registry=r)
        self.disconnects = Counter("hermes_gateway_client_disconnects", "Streams the client "
                                   "left before their end (nothing captured)", registry=r)
        self.sessions = Gauge("hermes_gateway_sessions_cached", "Session states in memory",
                              registry=r)
        self.gc_frozen = Gauge("hermes_gateway_gc_frozen_objects", "Objects built at "
                               "start-up and left out of the garbage collector's passes",
                               registry=r)
        self.plan_pending = Gauge("hermes_gateway_plan_pending", "1 while a recorded plan "
                                  "cannot be applied yet (its adapters do not load)", registry=r)
