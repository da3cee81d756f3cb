"""Cross-tenant A/B tests in the coordinator's log: create, record each look, conclude.

A test is the stream ``abtest-<id>`` of the coordinator's event store: ``ABTestCreated``,
then one ``ABTestStatsReported`` per look (the tenants' per-arm sufficient statistics, the
decision of that look and the always-valid test's state), then at most one
``ABTestConcluded{decision, numbers}``. The statistics are ``hermes_fed.abtest``'s; this
module only reads and appends events. Every append names the stream version it read, so
two coordinators cannot both record look 3 or both conclude (invariant 3).

Looks are *online* (nodes' users assigned to arms; `decide` with the sequential test) or
*offline* (paired candidate - current differences on held-out splits; `decide_offline`).
An offline ROLLBACK concludes the test (the candidate is not shown better); an offline
SHIP only passes the gate, and the online phase follows.

Invariants (tests cite them)
----------------------------
AB-C1. Every look appends exactly one ``ABTestStatsReported``; a look whose verdict is not
       CONTINUE (online) or is ROLLBACK (offline) appends ``ABTestConcluded`` in the same
       transaction.
AB-C2. A concluded test takes no further look and no second conclusion (`ABTestError`).
AB-C3. The sequential state is carried from look to look through the log only, so a
       restarted coordinator continues the same always-valid test.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from hermes_fed.abtest import (
    ArmStats,
    Decision,
    DecisionConfig,
    SequentialState,
    TenantArms,
    Verdict,
    decide,
    decide_offline,
    paired_test,
)
from hermes_fed.clock import current_clock
from hermes_fed.errors import ABTestError, ConcurrencyError, ConfigError
from hermes_fed.events import new_event
from hermes_fed.events.coordinator import ABTestConcluded, ABTestCreated, ABTestStatsReported

if TYPE_CHECKING:
    from hermes_fed.store import EventStore

STREAM_PREFIX = "abtest-"
_DAY_S = 86400.0


def stream_of(ab_test_id: str) -> str:
    return f"{STREAM_PREFIX}{ab_test_id}"


def arm_to_dict(arm: ArmStats) -> dict[str, Any]:
    body: dict[str, Any] = {"n": arm.n, "sum": arm.sum, "sumsq": arm.sumsq}
    if arm.has_covariate:
        body.update(sum_x=arm.sum_x, sum_x2=arm.sum_x2, sum_xy=arm.sum_xy)
    return body


def arm_from_dict(body: Mapping[str, Any]) -> ArmStats:
    cov = [body.get(k) for k in ("sum_x", "sum_x2", "sum_xy")]
    if all(c is not None for c in cov):
        return ArmStats(int(body["n"]), float(body["sum"]), float(body["sumsq"]),
                        *(float(c) for c in cov))  # type: ignore[arg-type]
    return ArmStats(int(body["n"]), float(body["sum"]), float(body["sumsq"]))


def _state_to_dict(s: SequentialState) -> dict[str, Any]:
    return {"looks": s.looks, "p_value": s.p_value,
            "ci_low": s.ci_low if math.isfinite(s.ci_low) else None,
            "ci_high": s.ci_high if math.isfinite(s.ci_high) else None,
            "scale": s.scale, "last_estimate": s.last_estimate, "last_variance": s.last_variance}


def _state_from_dict(body: Mapping[str, Any] | None) -> SequentialState:
    if not body:
        return SequentialState()
    low, high = body.get("ci_low"), body.get("ci_high")
    return SequentialState(int(body["looks"]), float(body["p_value"]),
                           -math.inf if low is None else float(low),
                           math.inf if high is None else float(high), str(body["scale"]),
                           float(body.get("last_estimate", 0.0)),
                           float(body.get("last_variance", 0.0)))


@dataclass(frozen=True, slots=True)
class ABTestSpec:
    """The ``ABTestCreated`` facts of one test and when it was recorded."""

    ab_test_id: str
    control: str
    treatment: str
    traffic_split: float
    min_samples: int
    duration_days: int
    created_at: datetime

    def decision_config(self, **overrides: Any) -> DecisionConfig:
        """`DecisionConfig` from the event (mapping documented on `DecisionConfig`).

        The minimum duration is a weekly cycle, or the whole test when it is shorter.
        """
        values: dict[str, Any] = {
            "min_total_per_arm": self.min_samples,
            "max_duration_days": float(self.duration_days),
            "min_duration_days": min(7.0, float(self.duration_days)),
            "treatment_share": self.traffic_split,
        }
        values.update(overrides)
        return DecisionConfig(**values)

    def elapsed_days(self, now: datetime) -> float:
        return max(0.0, (now - self.created_at).total_seconds() / _DAY_S)


@dataclass(frozen=True, slots=True)
class ABTestStatus:
    """A test as its stream tells it: the spec, the looks so far, the conclusion if any."""

    spec: ABTestSpec
    looks: tuple[Mapping[str, Any], ...]
    concluded: Mapping[str, Any] | None
    stream_version: int

    @property
    def is_open(self) -> bool:
        return self.concluded is None

    def last_online_state(self) -> SequentialState:
        for look in reversed(self.looks):
            if look["stats"].get("mode") == "online":
                return _state_from_dict(look["stats"].get("sequential_state"))
        return SequentialState()

    def has_offline_look(self) -> bool:
        return any(look["stats"].get("mode") == "offline" for look in self.looks)

    def to_dict(self) -> dict[str, Any]:
        last = self.looks[-1]["stats"] if self.looks else None
        return {"ab_test_id": self.spec.ab_test_id, "control": self.spec.control,
                "treatment": self.spec.treatment, "traffic_split": self.spec.traffic_split,
                "min_samples": self.spec.min_samples, "duration_days": self.spec.duration_days,
                "created_at": self.spec.created_at.isoformat(), "looks": len(self.looks),
                "last_look": None if last is None else {
                    k: last.get(k) for k in ("mode", "verdict", "reasons", "elapsed_days",
                                             "tenants", "suppressed_tenants")},
                "concluded": None if self.concluded is None else dict(self.concluded)}


@dataclass(frozen=True, slots=True)
class LookOutcome:
    """What one look recorded: its number, the decision, and whether it concluded the test."""

    ab_test_id: str
    look: int
    decision: Decision | None
    concluded: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        return self.decision.verdict if self.decision is not None else Verdict.CONTINUE


class ABTestLog:
    """A/B tests over the coordinator's event store (``coordinator.logs.registry`` opens it)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    # -- reading ---------------------------------------------------------------------
    def get(self, ab_test_id: str) -> ABTestStatus:
        events = self._store.read_stream(stream_of(ab_test_id))
        if not events or events[0].type != ABTestCreated.TYPE:
            raise ABTestError(f"no A/B test {ab_test_id!r} in the coordinator log")
        d = events[0].data
        spec = ABTestSpec(str(d["ab_test_id"]), str(d["control"]), str(d["treatment"]),
                          float(d["traffic_split"]), int(d["min_samples"]),
                          int(d["duration_days"]), events[0].occurred_at)
        looks = tuple(dict(e.data) for e in events if e.type == ABTestStatsReported.TYPE)
        concluded = next((dict(e.data) for e in events if e.type == ABTestConcluded.TYPE), None)
        return ABTestStatus(spec, looks, concluded, len(events))

    def all_tests(self) -> list[ABTestStatus]:
        """Every test, oldest first."""
        ids = [str(e.data["ab_test_id"]) for e in self._store.read()
               if e.type == ABTestCreated.TYPE and e.stream_id.startswith(STREAM_PREFIX)]
        return [self.get(i) for i in ids]

    def open_tests(self) -> list[ABTestStatus]:
        return [t for t in self.all_tests() if t.is_open]

    def shipped_versions(self) -> list[str]:
        """Treatments of tests concluded SHIP (what may be promoted to production)."""
        return [t.spec.treatment for t in self.all_tests()
                if t.concluded is not None and t.concluded["decision"] == Verdict.SHIP.value]

    # -- writing ---------------------------------------------------------------------
    def create(self, control: str, treatment: str, *, traffic_split: float = 0.1,
               min_samples: int = 1000, duration_days: int = 14,
               ab_test_id: str | None = None, now: datetime | None = None) -> ABTestSpec:
        """Append ``ABTestCreated``; bad values raise `ConfigError` and append nothing.

        The test starts at ``now`` (default: the injected clock, :mod:`hermes_fed.clock`):
        its duration is measured on the clock its looks are dated by.
        """
        if not control or not treatment or control == treatment:
            raise ConfigError(f"an A/B test needs two different versions, got control={control!r} "
                              f"treatment={treatment!r}")
        if not (math.isfinite(traffic_split) and 0.0 < traffic_split < 1.0):
            raise ConfigError(f"traffic_split must be in (0, 1), got {traffic_split!r}")
        if isinstance(min_samples, bool) or min_samples < 0:
            raise ConfigError(f"min_samples must be an int >= 0, got {min_samples!r}")
        if isinstance(duration_days, bool) or duration_days < 1:
            raise ConfigError(f"duration_days must be an int >= 1, got {duration_days!r}")
        test_id = ab_test_id or f"ab-{uuid.uuid4().hex[:12]}"
        if not test_id.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigError(f"ab_test_id must be letters, digits, '-', '_' or '.', got {test_id!r}")
        record = cast(Any, ABTestCreated)(ab_test_id=test_id, control=control, treatment=treatment,
                                          traffic_split=float(traffic_split),
                                          min_samples=int(min_samples),
                                          duration_days=int(duration_days))
        stream = stream_of(test_id)
        try:
            self._store.append([new_event(record, stream_id=stream,
                                          occurred_at=now or current_clock().now())],
                               expected_versions={stream: 0})
        except ConcurrencyError:
            raise ABTestError(f"A/B test {test_id!r} already exists") from None
        return self.get(test_id).spec

    def _append(self, status: ABTestStatus, records: Sequence[Any], actor: str) -> None:
        stream = stream_of(status.spec.ab_test_id)
        events = [new_event(r, stream_id=stream, metadata={"actor": actor}) for r in records]
        self._store.append(events, expected_versions={stream: status.stream_version})

    def _open(self, ab_test_id: str) -> ABTestStatus:
        status = self.get(ab_test_id)
        if not status.is_open:
            assert status.concluded is not None
            raise ABTestError(f"A/B test {ab_test_id!r} is already concluded "
                              f"({status.concluded['decision']})")
        return status

    def record_online_look(self, ab_test_id: str, tenants: Sequence[TenantArms], *,
                           suppressed: Sequence[str] = (), now: datetime | None = None,
                           overrides: Mapping[str, Any] | None = None) -> LookOutcome:
        """Decide this look from each tenant's cumulative arms and record it (AB-C1..3)."""
        status = self._open(ab_test_id)
        spec = status.spec
        elapsed = spec.elapsed_days(now or current_clock().now())
        look = len(status.looks) + 1
        stats: dict[str, Any] = {
            "mode": "online", "elapsed_days": elapsed, "suppressed_tenants": list(suppressed),
            "tenants": {t.tenant_id: {"control": arm_to_dict(t.control),
                                      "treatment": arm_to_dict(t.treatment)} for t in tenants},
        }
        decision: Decision | None = None
        if tenants:
            decision = decide(tenants, elapsed_days=elapsed,
                              config=spec.decision_config(**dict(overrides or {})),
                              sequential=status.last_online_state())
            reasons = list(decision.reasons)
            stats.update(verdict=decision.verdict.value, reasons=reasons,
                         numbers=decision.numbers,
                         sequential_state=_state_to_dict(decision.sequential))
        else:
            reasons = ["no tenant reported both arms above k_min"]
            stats.update(verdict=Verdict.CONTINUE.value, reasons=reasons, numbers=None,
                         sequential_state=_state_to_dict(status.last_online_state()))
        concludes = decision is not None and decision.verdict is not Verdict.CONTINUE
        self._record(status, look, stats, decision if concludes else None, "auto")
        return LookOutcome(ab_test_id, look, decision, concludes, reasons)

    def record_offline_look(self, ab_test_id: str, paired: Mapping[str, ArmStats], *,
                            suppressed: Sequence[str] = (), now: datetime | None = None,
                            overrides: Mapping[str, Any] | None = None) -> LookOutcome:
        """Paired held-out differences per tenant -> `decide_offline`; ROLLBACK concludes."""
        status = self._open(ab_test_id)
        spec = status.spec
        look = len(status.looks) + 1
        cfg = spec.decision_config(**dict(overrides or {}))
        usable = {t: a for t, a in paired.items() if a.n >= 2}
        stats: dict[str, Any] = {
            "mode": "offline", "elapsed_days": spec.elapsed_days(now or current_clock().now()),
            "suppressed_tenants": list(suppressed),
            "tenants": {t: {"paired": arm_to_dict(a)} for t, a in paired.items()},
        }
        decision: Decision | None = None
        if usable:
            decision = decide_offline([paired_test(t, a, alpha=cfg.alpha)
                                       for t, a in sorted(usable.items())], config=cfg)
            reasons = list(decision.reasons)
            stats.update(verdict=decision.verdict.value, reasons=reasons, numbers=decision.numbers)
        else:
            reasons = ["no tenant reported a held-out paired cell above k_min"]
            stats.update(verdict=Verdict.CONTINUE.value, reasons=reasons, numbers=None)
        concludes = decision is not None and decision.verdict is Verdict.ROLLBACK
        self._record(status, look, stats, decision if concludes else None, "auto")
        return LookOutcome(ab_test_id, look, decision, concludes, reasons)

    def _record(self, status: ABTestStatus, look: int, stats: dict[str, Any],
                conclusion: Decision | None, actor: str) -> None:
        records: list[Any] = [cast(Any, ABTestStatsReported)(
            ab_test_id=status.spec.ab_test_id, round=look, stats=stats)]
        if conclusion is not None:
            records.append(_concluded(status.spec.ab_test_id, conclusion.verdict,
                                      conclusion.reasons, conclusion.numbers, look, actor))
        self._append(status, records, actor)

    def conclude(self, ab_test_id: str, *, verdict: Verdict | None = None,
                 reason: str = "") -> dict[str, Any]:
        """Conclude by hand: the last look's verdict, or ``verdict`` (an operator's override).

        Without ``verdict`` the last look must have decided SHIP or ROLLBACK; an operator
        stopping a CONTINUE test must say which verdict and why (``reason``).
        """
        status = self._open(ab_test_id)
        last = status.looks[-1]["stats"] if status.looks else None
        looked = Verdict(last["verdict"]) if last is not None else Verdict.CONTINUE
        chosen = verdict or looked
        if chosen is Verdict.CONTINUE:
            raise ABTestError(f"A/B test {ab_test_id!r}: the last look says CONTINUE; pass a "
                              "verdict (SHIP or ROLLBACK) and a reason to stop it by hand")
        if verdict is not None and verdict is not looked and not reason:
            raise ABTestError(f"A/B test {ab_test_id!r}: overriding the looked verdict "
                              f"{looked.value} with {verdict.value} needs a reason")
        reasons = list(last.get("reasons", [])) if last is not None else []
        if reason:
            reasons.append(f"operator: {reason}")
        numbers = dict(last.get("numbers") or {}) if last is not None else {}
        record = _concluded(ab_test_id, chosen, reasons, numbers, len(status.looks), "operator",
                            looked=looked)
        self._append(status, [record], "operator")
        concluded = self.get(ab_test_id).concluded
        assert concluded is not None
        return dict(concluded)


def _concluded(ab_test_id: str, verdict: Verdict, reasons: Sequence[str],
               numbers: Mapping[str, Any] | None, look: int, by: str,
               looked: Verdict | None = None) -> Any:
    body = {**dict(numbers or {}), "reasons": list(reasons), "look": look, "concluded_by": by}
    if looked is not None:
        body["looked_verdict"] = looked.value
    return cast(Any, ABTestConcluded)(ab_test_id=ab_test_id, decision=verdict.value, numbers=body)
