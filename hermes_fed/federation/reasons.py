"""Why a node's handler failed, as a reason code that carries no data.

Flower copies ``str(exception)`` of a failed ClientApp handler into the error reply the
coordinator sees, so the node's egress guard raises only :func:`error_text`: the message
type, a reason code from :data:`REASONS`, the node's tenant id (a version id, as its
replies carry it) and the exception's type name — never the exception's own text, which
may quote data. The coordinator reads the code back with :func:`parse_reason` (and the
tenant with :func:`parse_tenant`) and prints :data:`REASONS`' explanation beside the
node's tenant.
"""

from __future__ import annotations

import re

from hermes_fed.errors import (
    AdapterError,
    AdapterIntegrityError,
    ConfigError,
    DatabaseError,
    EgressError,
    ExamplesTooLongError,
    FederationError,
    NothingToTrainError,
    PlanAdapterMissingError,
    TrainingError,
    UpstreamLoadError,
)
from hermes_fed.federation.messages import VERSION_ID

REASONS: dict[str, str] = {
    "no-training-data": "the node has no selected trajectories to train on "
                        "(score them, or import curated data)",
    "bad-request": "the node could not read the coordinator's message (versions differ?)",
    "bad-node-config": "the node's --node-config is invalid (see its SuperNode log)",
    "bad-adapter": "the adapter does not fit the node's base model (rank, modules, shapes)",
    "store-unavailable": "the node's event store could not be opened or read",
    "local-files": "a local file the node needs is missing or unreadable "
                   "(base model, key ring)",
    "examples-too-long": "every selected example was cut before its first assistant token "
                         "at --max-length: raise --max-length",
    "training-failed": "local training failed (NaN/inf loss or tensor, out of memory)",
    "adapter-mismatch": "a delivered adapter's tensors do not match its published "
                        "sha256, or the node holds other tensors under that version; "
                        "its users stay on its last applied plan",
    "plan-adapter-missing": "the plan names a version the node has no adapter for and the "
                            "delivery did not bring it; its users stay on its last applied plan",
    "upstream-load-failed": "the node's upstream (its [gateway] upstream_url) did not load an "
                            "adapter; its users stay on its last applied plan",
    "egress-refused": "the node's egress guard refused the reply",
    "internal": "an unexpected error on the node (see its SuperNode log)",
}

_PATTERN = re.compile(r"reason=([a-z-]+)")
_TENANT = re.compile(r"tenant=(" + VERSION_ID.pattern + ")")


def reason_for(exc: BaseException) -> str:
    """The reason code of an exception raised by a node's handler."""
    checks: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
        (NothingToTrainError, "no-training-data"),
        (AdapterIntegrityError, "adapter-mismatch"),
        (PlanAdapterMissingError, "plan-adapter-missing"),
        (UpstreamLoadError, "upstream-load-failed"),
        (ExamplesTooLongError, "examples-too-long"),
        (TrainingError, "training-failed"),
        (AdapterError, "bad-adapter"),
        (ConfigError, "bad-node-config"),
        (EgressError, "egress-refused"),
        (DatabaseError, "store-unavailable"),
        (FederationError, "bad-request"),
        ((FileNotFoundError, PermissionError, IsADirectoryError), "local-files"),
    )
    for kinds, code in checks:
        if isinstance(exc, kinds):
            return code
    return "internal"


def error_text(message_type: str, exc: BaseException, tenant: object = None) -> str:
    """The only text about a failure that leaves the node (``tenant`` only when it is a
    version id, as the egress guard lets it out in replies)."""
    named = (f" tenant={tenant}" if isinstance(tenant, str) and len(tenant) <= 64
             and VERSION_ID.fullmatch(tenant) else "")
    return f"{message_type} failed: reason={reason_for(exc)}{named} ({type(exc).__name__})"


def parse_reason(text: str) -> str | None:
    """The reason code in an error reply's text, or None."""
    found = _PATTERN.search(text)
    return found.group(1) if found and found.group(1) in REASONS else None


def parse_tenant(text: str) -> str | None:
    """The tenant id an error reply's text names, or None."""
    found = _TENANT.search(text)
    return found.group(1) if found else None


def explain(text: str) -> str:
    """A one-line explanation of an error reply's text for the coordinator's operator."""
    code = parse_reason(text)
    return f"{code}: {REASONS[code]}" if code else text
