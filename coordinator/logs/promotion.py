"""Staged promotion as events in the coordinator's log, with automatic rollbacks.

The stream ``model-promotion`` of the coordinator's store holds ``ModelPromoted`` and
``ModelRolledBack``; the registry's state is ``hermes_fed.registry.promotion.replay`` of
those facts (the state machine, its invariants P1-P4 and the traffic fractions live there).
``ModelQualityReported`` events on ``model-quality-<version>`` hold each look's quality
of the production version across tenants; the negative-feedback-loop guard reads them.

Automatic actions (each recorded with its reason):

* an A/B test concluded ROLLBACK rolls its treatment back if it is live (`on_conclusion`);
* a production version whose per-look quality trend breaches `QualityGuardConfig` is
  rolled back to its predecessor (`check_feedback_loop`).

Invariants (tests cite them)
----------------------------
PR1. Every promotion or rollback is validated by the state machine before it is appended
     (an illegal request appends nothing), and appended at the stream version it was
     validated against, so a concurrent change makes it fail rather than skip a check.
PR2. Promoting a version to production needs a SHIP conclusion of an A/B test whose
     treatment it is, unless forced (the reason then says so).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from hermes_fed.abtest import QualityGuardConfig, QualityTrend, quality_trend
from hermes_fed.errors import IllegalTransitionError
from hermes_fed.events import new_event
from hermes_fed.events.coordinator import ModelQualityReported
from hermes_fed.registry.promotion import (
    Fact,
    PromotionConfig,
    RegistryState,
    RolledBack,
    Stage,
    fact_from_event,
    fact_to_event,
    feedback_guard,
    promote,
    replay,
    rollback,
)

if TYPE_CHECKING:
    from hermes_fed.store import EventStore

logger = logging.getLogger(__name__)

PROMOTION_STREAM = "model-promotion"
QUALITY_PREFIX = "model-quality-"
_FACT_TYPES = ("ModelPromoted", "ModelRolledBack")
_LIVE = (Stage.CANDIDATE, Stage.CANARY, Stage.AB, Stage.PRODUCTION)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One recorded promotion fact and when it was recorded."""

    position: int
    recorded_at: datetime
    event_type: str
    data: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "recorded_at": self.recorded_at.isoformat(),
                "type": self.event_type, **dict(self.data)}


class PromotionLog:
    """Promotion facts over the coordinator's event store."""

    def __init__(self, store: EventStore, config: PromotionConfig | None = None) -> None:
        self._store = store
        self.config = config or PromotionConfig()

    def _events(self) -> list[Any]:
        return [e for e in self._store.read_stream(PROMOTION_STREAM) if e.type in _FACT_TYPES]

    def state(self) -> RegistryState:
        return replay(fact_from_event(e.type, e.data) for e in self._events())

    def history(self, version: str | None = None) -> list[HistoryEntry]:
        return [HistoryEntry(e.position, e.recorded_at, e.type, dict(e.data))
                for e in self._events() if version is None or e.data.get("version") == version]

    def _append(self, fact: Fact, seen: int, actor: str) -> Fact:
        kind, data = fact_to_event(fact)
        self._store.append([_fact_event(kind, data, actor)],
                           expected_versions={PROMOTION_STREAM: seen})
        logger.info("action=%s version=%s actor=%s", kind, fact.version, actor)
        return fact

    def _seen(self) -> int:
        return len(self._store.read_stream(PROMOTION_STREAM))

    def promote(self, version: str, *, reason: str = "", force: bool = False,
                shipped: Sequence[str] = (), actor: str = "operator") -> Fact:
        """Move ``version`` one stage on (registering it as a candidate first), PR1-PR2.

        ``shipped`` are the versions with a SHIP conclusion (``ab_tests_shipped``).
        """
        seen = self._seen()
        state = self.state()
        fact = promote(state, version, self.config, reason)
        if fact.stage is Stage.PRODUCTION and version not in shipped:
            if not force:
                raise IllegalTransitionError(
                    f"version {version!r}: no A/B test with this treatment concluded SHIP; "
                    "conclude one, or force the promotion with a reason")
            fact = promote(state, version, self.config,
                           f"forced without a SHIP A/B conclusion: {reason}".rstrip(": "))
        return self._append(fact, seen, actor)

    def rollback(self, version: str, reason: str, *, actor: str = "operator") -> Fact:
        if not reason:
            raise IllegalTransitionError(f"version {version!r}: a rollback needs a reason")
        seen = self._seen()
        return self._append(rollback(self.state(), version, reason), seen, actor)

    def on_conclusion(self, ab_test_id: str, treatment: str, verdict: str,
                      reasons: Sequence[str]) -> Fact | None:
        """Roll the treatment back when its test concluded ROLLBACK and it is live."""
        if verdict != "ROLLBACK":
            return None
        current = self.state().get(treatment)
        if current is None or current.stage not in _LIVE:
            return None
        why = f"A/B test {ab_test_id} concluded ROLLBACK: " + "; ".join(reasons)
        return self.rollback(treatment, why[:2000], actor="abtest")

    # -- the negative-feedback-loop guard ---------------------------------------------
    def record_quality(self, version: str, stats: Mapping[str, Any]) -> int:
        """Append one look's quality of ``version``; returns its look number."""
        stream = f"{QUALITY_PREFIX}{version}"
        seen = len(self._store.read_stream(stream))
        record = cast(Any, ModelQualityReported)(version=version, round=seen + 1,
                                                 stats=dict(stats))
        self._store.append([new_event(record, stream_id=stream)],
                           expected_versions={stream: seen})
        return seen + 1

    def quality_series(self, version: str) -> list[tuple[datetime, float]]:
        """``(recorded_at, mean)`` of the version's quality looks that had data."""
        return [(e.recorded_at, float(e.data["stats"]["mean"]))
                for e in self._store.read_stream(f"{QUALITY_PREFIX}{version}")
                if e.data["stats"].get("mean") is not None]

    def check_feedback_loop(self, config: QualityGuardConfig | None = None
                            ) -> tuple[QualityTrend | None, Fact | None]:
        """The production version's trend since its (latest) promotion; roll back if it breaches."""
        state = self.state()
        version = state.production
        if version is None:
            return None, None
        promoted_at = max(h.recorded_at for h in self.history(version)
                          if h.event_type == "ModelPromoted" and h.data["stage"] == "production")
        scores = [m for when, m in self.quality_series(version) if when >= promoted_at]
        if not scores:
            return None, None
        trend = quality_trend(scores, None, config)
        seen = self._seen()
        fact = feedback_guard(state, scores, None, config)
        if fact is None:
            return trend, None
        assert isinstance(fact, RolledBack)
        return trend, self._append(fact, seen, "feedback-guard")


def _fact_event(kind: str, data: Mapping[str, Any], actor: str) -> Any:
    from hermes_fed.events.coordinator import ModelPromoted, ModelRolledBack

    cls = {"ModelPromoted": ModelPromoted, "ModelRolledBack": ModelRolledBack}[kind]
    return new_event(cast(Any, cls)(**data), stream_id=PROMOTION_STREAM,
                     metadata={"actor": actor})
