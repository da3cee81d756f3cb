"""Events of the coordinator's own log: rounds, the model registry, A/B tests, promotion."""

from __future__ import annotations

from typing import Any

from .schema import EventRecord, event_type


@event_type("RoundStarted")
class RoundStarted(EventRecord):
    round_id: str
    round: int
    mode: str
    parent_version: str | None
    node_ids: list[str]
    config: dict[str, Any]


@event_type("RoundCompleted")
class RoundCompleted(EventRecord):
    round_id: str
    round: int
    version: str | None
    report: dict[str, Any]


@event_type("RoundFailed")
class RoundFailed(EventRecord):
    round_id: str
    round: int
    error: str


@event_type("AdapterVersionPublished")
class AdapterVersionPublished(EventRecord):
    version: str
    parent: str | None
    sha256: str
    lineage: dict[str, Any]


@event_type("ABTestCreated")
class ABTestCreated(EventRecord):
    ab_test_id: str
    control: str
    treatment: str
    traffic_split: float = 0.1
    min_samples: int = 1000
    duration_days: int = 14


@event_type("ABTestStatsReported")
class ABTestStatsReported(EventRecord):
    ab_test_id: str
    round: int
    stats: dict[str, Any]


@event_type("ABTestConcluded")
class ABTestConcluded(EventRecord):
    ab_test_id: str
    decision: str
    numbers: dict[str, Any]


@event_type("ModelPromoted")
class ModelPromoted(EventRecord):
    version: str
    stage: str
    traffic_fraction: float
    reason: str = ""


@event_type("ModelRolledBack")
class ModelRolledBack(EventRecord):
    version: str
    to_version: str | None
    reason: str


@event_type("ModelQualityReported")
class ModelQualityReported(EventRecord):
    """One look's quality of a live version across tenants (the feedback-loop guard's input)."""

    version: str
    round: int
    stats: dict[str, Any]


# --- the autopilot (coordinator.autopilot; DESIGN.md §11) ---------------------------------
@event_type("AutopilotStepIntended")
class AutopilotStepIntended(EventRecord):
    """The autopilot is about to do step ``step`` of cycle ``cycle``: written *before* the
    step, so a crash leaves an intent without an outcome that the next run completes."""

    cycle: int
    step: int
    action: str
    params: dict[str, Any]
    reason: str
    numbers: dict[str, Any]


@event_type("AutopilotStepCompleted")
class AutopilotStepCompleted(EventRecord):
    """What step ``step`` of cycle ``cycle`` did (``ok`` false: it failed, named in ``result``)."""

    cycle: int
    step: int
    action: str
    ok: bool
    result: dict[str, Any]


@event_type("AutopilotWaited")
class AutopilotWaited(EventRecord):
    """The autopilot decided not to act now (recorded when the reason or readiness changes)."""

    cycle: int
    reason: str
    numbers: dict[str, Any]


@event_type("AutopilotCycleEnded")
class AutopilotCycleEnded(EventRecord):
    """Cycle ``cycle`` is over: ``outcome`` is ``production``, ``rolled_back`` or ``failed``."""

    cycle: int
    outcome: str
    version: str | None
    reason: str
