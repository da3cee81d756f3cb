"""One error root for hermes-fed.

Persistence errors are named after PEP 249 (``IntegrityError``, ``OperationalError``, ...):
a driver's exception is mapped to ours class by class (``hermes_fed.store.sql_backend``);
domain errors say what went wrong and what to do. Messages name fields and types, never
the values of event data (they may be personal).
"""

from __future__ import annotations


class HermesFedError(Exception):
    """Root of every error hermes-fed raises on purpose."""


class ConfigError(HermesFedError, ValueError):
    """A configuration value is invalid; the message names the key and the bad value."""


# --- persistence (PEP 249 names) -------------------------------------------------------
class DatabaseError(HermesFedError):
    """An error from the event store's database."""


class IntegrityError(DatabaseError):
    """The log's integrity is violated: a broken hash chain, a refused mutation."""


class OperationalError(DatabaseError):
    """The database could not do the operation (unreachable, locked, disk full)."""


class LogBusyError(OperationalError):
    """Another writer holds the log's write lock and the append was asked not to wait
    (:func:`hermes_fed.store.sqlite.without_waiting`); nothing was written."""


class ProgrammingError(DatabaseError):
    """The database refused a statement as written (unknown table, bad syntax, a PL/pgSQL
    ``RAISE``), or the backend cannot run statements at all (the in-memory log)."""


class DataError(DatabaseError):
    """The database refused a value (out of range, division by zero, bad encoding)."""


class InternalError(DatabaseError):
    """The database's own state is inconsistent (a cursor gone, a transaction out of sync)."""


class NotSupportedError(DatabaseError):
    """The database does not support the operation asked of it."""


class InterfaceError(DatabaseError):
    """The database driver itself failed (a closed connection, a misuse of its API).

    PEP 249 puts it beside ``DatabaseError``; here it sits under it, so that one
    ``except DatabaseError`` catches every failure of the store's database."""


class CorruptEventError(IntegrityError):
    """A stored row cannot be decoded (bad ciphertext, bad JSON, wrong hash)."""


# --- domain ------------------------------------------------------------------------------
class ConcurrencyError(HermesFedError):
    """Optimistic concurrency failed: the stream moved on since it was read."""

    def __init__(self, stream_id: str, actual: int, expected: int) -> None:
        super().__init__(
            f"stream {stream_id} is at version {actual}, append expected {expected}; "
            "re-read the stream and retry"
        )
        self.stream_id = stream_id
        self.actual = actual
        self.expected = expected


class UnknownEventTypeError(HermesFedError, ValueError):
    """An event type that is not in the catalog."""


class SchemaError(HermesFedError, ValueError):
    """Event data does not match its schema; names the field and the value's type only."""

    def __init__(self, event_type: str, field: str, problem: str) -> None:
        super().__init__(f"{event_type}.{field}: {problem}")
        self.event_type = event_type
        self.field = field
        self.problem = problem


class KeyringError(HermesFedError):
    """A key is missing, malformed or wrong (decryption failed authentication)."""


class SubjectErasedError(HermesFedError):
    """The subject's key was destroyed (crypto-shredding); the fields are unreadable."""


class RedactionError(HermesFedError):
    """Redaction could not run; nothing is written when it fails."""


class TrainingError(HermesFedError):
    """Local training failed (for example a NaN/inf loss or tensor)."""


class NothingToTrainError(TrainingError):
    """No new scored trajectories to select: a normal outcome, not a failure."""


class ExamplesTooLongError(TrainingError):
    """Every selected example lost its assistant tokens to ``max_length``: raise it."""


class AggregationError(HermesFedError):
    """Adapters could not be aggregated (shape mismatch, NaN update, empty round)."""


class EgressError(HermesFedError):
    """A reply to the coordinator would carry something that may not leave the node."""


class FederationError(HermesFedError):
    """A federated round failed (a process did not start, the run did not complete)."""


class DeployError(FederationError):
    """A node cannot apply a delivered traffic plan; its users stay on its last applied plan."""


class AdapterIntegrityError(DeployError):
    """A delivered adapter's tensors do not match its published sha256, or the node holds
    other tensors under that version already (a version is never replaced in place)."""


class PlanAdapterMissingError(DeployError):
    """A plan names a version the node has no adapter for, and the delivery brought none."""


class UpstreamLoadError(DeployError):
    """The node's upstream did not load an adapter of the plan."""


class PrivacyBudgetExhausted(FederationError):
    """The configured differential-privacy epsilon budget would be exceeded."""


class InsufficientDataError(HermesFedError, ValueError):
    """A statistic needs more observations than it was given (a mean of 0, a variance of 1)."""


class IllegalTransitionError(HermesFedError, ValueError):
    """A model-promotion fact moves a version along a transition the stage graph forbids."""


class FormatError(HermesFedError, ValueError):
    """An import record is not in the declared format; names the line and the field."""


class AdapterError(HermesFedError, ValueError):
    """An adapter is malformed or does not fit its base model (names the tensor and shapes)."""


class JudgeError(HermesFedError):
    """A trajectory judge failed (endpoint unreachable, timed out, or sent no score)."""


class TeacherError(HermesFedError):
    """A cold-start teacher endpoint failed (unreachable, timed out, or no usable answer)."""


class ABTestError(HermesFedError):
    """An A/B test operation is not possible (unknown test id, already concluded)."""
