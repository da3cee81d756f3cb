"""Python client SDK of a tenant node's gRPC ingest API (``hermes_fed.v1.IngestService``)."""

from .client import Assignment, IngestClient, SessionRecorder, check_event, envelope, stored_event
from .transport import IngestError, NodeTransport, RetryPolicy

__all__ = [
    "Assignment",
    "IngestClient",
    "IngestError",
    "NodeTransport",
    "RetryPolicy",
    "SessionRecorder",
    "check_event",
    "envelope",
    "stored_event",
]
