"""The autopilot's decisions, as pure functions of the folded state (DESIGN.md §8, §11).

:func:`decide` (state, observation, config, now) returns what to do next and why; it
reads no clock, store or network (the runner does the I/O, :mod:`.runner`). In order:

1. **Delivery first.** The plan the promotion state calls for (:func:`desired_plan`) must
   be applied on every node before anything else moves: a ``deploy`` step, retried every
   ``deploy_retry_seconds`` while some node has not acknowledged it.
2. A cycle that reached ``production`` or ``rolled_back`` (its plan delivered) ends.
3. **Production watch**, in every phase but training: a quality look every
   ``quality_interval_seconds``; a breach of the negative-feedback-loop guard or the
   degradation trigger (:func:`hermes_fed.abtest.quality_trend`) rolls production back.
4. The phase's own step: readiness (``waiting``), the offline look, the canary guardrail,
   the online A/B's sequential looks.

Invariants (tests cite them)
----------------------------
AD1. ``decide`` never returns a step while one is pending (the runner finishes it first).
AD2. Every step and every recorded wait carries a reason and the numbers it rests on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hermes_fed.abtest import TenantArms, welch_test
from hermes_fed.federation.delivery import TriggerReport
from hermes_fed.registry.promotion import RegistryState, Stage
from hermes_fed.serving.plan import BASE_VERSION, PlanArm, TrafficPlan

from .config import AutopilotConfig
from .state import Action, AutopilotState, Phase, readiness_key

CONTROL, TREATMENT = "control", "treatment"


@dataclass(frozen=True, slots=True)
class Readiness:
    """The nodes' answers to ``query.trigger`` (the observation of ``waiting``)."""

    reports: tuple[TriggerReport, ...] = ()
    missing: tuple[str, ...] = ()  # nodes that did not answer, by name

    def to_numbers(self) -> dict[str, Any]:
        tenants = {r.tenant: {"train": r.train, "rule": r.rule, "new_scored": r.new_scored,
                              "new_high_quality": r.new_high_quality,
                              "high_quality_rate": r.high_quality_rate,
                              "days_since_training": r.days_since_training}
                   for r in self.reports}
        return {"tenants": tenants, "answered": len(self.reports),
                "saying_train": sum(1 for r in self.reports if r.train),
                "missing": list(self.missing)}


@dataclass(frozen=True, slots=True)
class Step:
    """Do ``action`` now (the runner writes the intent first)."""

    action: Action
    params: Mapping[str, Any]
    reason: str
    numbers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do now; ``record`` when the reason is news (worth an event)."""

    reason: str
    numbers: Mapping[str, Any] = field(default_factory=dict)
    record: bool = False


@dataclass(frozen=True, slots=True)
class EndCycle:
    outcome: str
    version: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Observe:
    """Ask the nodes for their readiness, then decide again with it."""


Decision = Step | Wait | EndCycle | Observe


def canary_test_id(version: str) -> str:
    return f"canary-{version}"


def ab_test_id(version: str) -> str:
    return f"ab-{version}"


def desired_plan(registry: RegistryState) -> TrafficPlan:
    """The traffic plan the promotion state calls for.

    Production (or the base model when none) keeps the rest of the users; a version in A/B
    gets its share under the A/B test's id, a canary its share under ``canary-<version>``;
    otherwise everyone is on production (after a rollback: the restored version).
    """
    production = registry.production or BASE_VERSION
    for stage, test_id in ((Stage.AB, ab_test_id), (Stage.CANARY, canary_test_id)):
        holder = registry.holder(stage)
        if holder is not None:
            held = registry.get(holder)
            assert held is not None
            share = held.traffic_fraction
            return TrafficPlan(test_id(holder), (PlanArm(CONTROL, production, 1.0 - share),
                                                 PlanArm(TREATMENT, holder, share)), CONTROL)
    return TrafficPlan.single(production)


def canary_guard(arms: Sequence[TenantArms], config: AutopilotConfig) -> dict[str, Any]:
    """The canary's guardrail over each tenant's (production, candidate) session quality.

    Breached when a tenant is significantly harmed (Welch, one-sided ``p_harm <
    canary_alpha``) or, once both pooled arms hold ``canary_min_samples`` sessions, when
    the pooled candidate mean is more than ``canary_max_drop`` (relative; absolute when the
    control mean is <= 0) below the pooled control mean.
    """
    harmed: list[str] = []
    per_tenant: dict[str, Any] = {}
    for t in arms:
        if t.control.n < 2 or t.treatment.n < 2:
            per_tenant[t.tenant_id] = {"n_control": t.control.n, "n_treatment": t.treatment.n}
            continue
        w = welch_test(t, alpha=config.canary_alpha)
        per_tenant[t.tenant_id] = {"n_control": w.n_control, "n_treatment": w.n_treatment,
                                   "diff": w.diff, "p_harm": w.p_harm}
        if w.p_harm < config.canary_alpha:
            harmed.append(t.tenant_id)
    control = sum((t.control for t in arms[1:]), arms[0].control) if arms else None
    treatment = sum((t.treatment for t in arms[1:]), arms[0].treatment) if arms else None
    reasons = [f"tenant {t} significantly harmed (p_harm {per_tenant[t]['p_harm']:.3g} < "
               f"{config.canary_alpha})" for t in harmed]
    drop = None
    if control is not None and treatment is not None and treatment.n and control.n:
        c_mean, t_mean = control.mean, treatment.mean
        drop = (c_mean - t_mean) / c_mean if c_mean > 0 else c_mean - t_mean
        if min(control.n, treatment.n) >= config.canary_min_samples \
                and drop > config.canary_max_drop:
            reasons.append(f"pooled candidate quality {t_mean:.4f} is {drop:.1%} below "
                           f"production's {c_mean:.4f} (> {config.canary_max_drop})")
    return {"breached": bool(reasons), "reasons": reasons, "harmed": harmed,
            "drop": drop, "tenants": per_tenant,
            "n_control": control.n if control is not None else 0,
            "n_treatment": treatment.n if treatment is not None else 0}


def _days(later: datetime, earlier: datetime | None) -> float:
    return math.inf if earlier is None else (later - earlier).total_seconds() / 86400.0


def _due(now: datetime, last: datetime | None, interval_s: float) -> bool:
    return last is None or (now - last).total_seconds() >= interval_s


def _delivery(state: AutopilotState, config: AutopilotConfig, now: datetime) -> Decision | None:
    wanted = desired_plan(state.registry)
    if state.plan_applied is not None and dict(state.plan_applied) == wanted.to_dict():
        return None
    numbers = {"plan": wanted.to_dict(), "attempt": state.deploy_attempts + 1,
               "not_acknowledged": list(state.deploy_failed)}
    if state.deploy_failed_at is not None and not _due(now, state.deploy_failed_at,
                                                       config.deploy_retry_seconds):
        return Wait(f"plan {wanted.test_id} not acknowledged by "
                    f"{', '.join(state.deploy_failed) or 'any node'}; retrying after "
                    f"{config.deploy_retry_seconds:g} s", numbers)
    was = state.plan_applied["test_id"] if state.plan_applied else "none"
    return Step(Action.DEPLOY, {"plan": wanted.to_dict()},
                f"deliver plan {wanted.test_id} (applied everywhere so far: {was})", numbers)


def _production_watch(state: AutopilotState, config: AutopilotConfig,
                      now: datetime) -> Decision | None:
    production = state.registry.production
    if production is None or state.phase is Phase.TRAINING:
        return None
    last = state.last_quality
    if last is not None and last.get("version") == production and last.get("breached"):
        return Step(Action.ROLLBACK, {"version": production},
                    f"production {production}: {last.get('reason')}",
                    {k: last.get(k) for k in ("looks", "slope", "drop", "recent_mean",
                                              "baseline")})
    if _due(now, state.last_quality_at, config.quality_interval_seconds):
        return Step(Action.QUALITY_LOOK, {"version": production},
                    f"production {production}: quality look due (every "
                    f"{config.quality_interval_seconds:g} s)")
    return None


def training_parent(state: AutopilotState, config: AutopilotConfig) -> tuple[str | None, str]:
    """The version the next cycle trains from, and why when it is not production.

    Production, unless the last cycle's candidate was rolled back as *inconclusive*
    (:func:`coordinator.autopilot.state._carried`), production has not changed since it was
    trained, and ``continue_inconclusive`` is on: then training goes on from that candidate,
    as a federation's global model goes on from its last round. What users are served is
    still decided only by the offline look, the canary and the A/B against production.
    """
    production = state.registry.production
    carry = state.carry_forward
    if not config.continue_inconclusive or carry is None:
        return production, ""
    version, trained_from = carry
    if trained_from != production or state.registry.get(version) is None:
        return production, ""
    return version, (f"training on from {version}: its online A/B ended inconclusive "
                     f"against production {production or BASE_VERSION}")


def _waiting(state: AutopilotState, seen: Readiness | None, config: AutopilotConfig,
             now: datetime) -> Decision:
    if state.last_failed_at is not None and not _due(now, state.last_failed_at,
                                                     config.failed_retry_seconds):
        last = state.cycles[-1] if state.cycles else {}
        return Wait(f"cycle {last.get('cycle')} failed ({last.get('reason')}); next try "
                    f"after {config.failed_retry_seconds:g} s")
    if seen is None:
        return Observe()
    numbers = seen.to_numbers()
    saying = [r.tenant for r in seen.reports if r.train]
    parent, carried = training_parent(state, config)
    params = {"parent": parent, "rounds": config.rounds_per_cycle}
    since = state.last_trained_at or state.started_at
    age = _days(now, since)
    numbers["days_since_training"] = None if math.isinf(age) else age
    if carried:
        numbers["parent"] = carried
    if len(saying) >= config.min_nodes:
        return Step(Action.TRAIN, params, f"{len(saying)} of {len(seen.reports)} nodes say "
                    f"train ({', '.join(sorted(saying))}) >= min_nodes {config.min_nodes}",
                    numbers)
    if since is not None and age >= config.stale_days and seen.reports:
        what = ("last training" if state.last_trained_at is not None
                else "no training since the autopilot started")
        return Step(Action.TRAIN, params, f"stale: {what} {age:.1f} days ago >= "
                    f"stale_days {config.stale_days:g}; training with the "
                    f"{len(seen.reports)} node(s) that answered", numbers)
    reason = (f"{len(saying)} of {len(seen.reports)} nodes say train (< min_nodes "
              f"{config.min_nodes})" + (f"; {len(seen.missing)} did not answer"
                                        if seen.missing else ""))
    key = (reason, readiness_key(numbers["tenants"]))
    return Wait(reason, numbers, record=key != state.last_wait)


def _canary(state: AutopilotState, config: AutopilotConfig, now: datetime) -> Decision:
    candidate = state.candidate
    assert candidate is not None
    look = state.last_look
    if look is not None and look.get("breached"):
        return Step(Action.ROLLBACK, {"version": candidate},
                    f"canary guardrail breached: {'; '.join(look.get('reasons', []))}",
                    {k: look.get(k) for k in ("drop", "harmed", "n_control", "n_treatment")})
    days = _days(now, state.phase_since)
    # the look that ends the canary covers canary_days: taken at or after their end
    looked = (_days(state.last_look_at, state.phase_since)
              if look is not None and state.last_look_at is not None else -1.0)
    if looked >= config.canary_days:
        assert look is not None
        seen = int(look.get("n_treatment") or 0)
        numbers = {"days": looked, "n_control": look.get("n_control"), "n_treatment": seen,
                   "drop": look.get("drop")}
        params = {"version": candidate, "stage": "ab",
                  "ab_test_id": state.ab_test_id or ab_test_id(candidate)}
        if seen >= config.canary_min_samples:
            return Step(Action.PROMOTE, params,
                        f"canary clean for {looked:.2f} days >= canary_days "
                        f"{config.canary_days:g} over {seen} candidate sessions", numbers)
        if looked >= config.canary_max_days:
            return Step(Action.PROMOTE, params,
                        f"canary saw {seen} candidate sessions in {looked:.2f} days "
                        f"(< canary_min_samples {config.canary_min_samples}), none harmful; "
                        f"after canary_max_days {config.canary_max_days:g} the A/B's "
                        "sequential test takes over", numbers)
    ended = days >= config.canary_days and looked < config.canary_days
    if ended or _due(now, state.last_look_at or state.phase_since,
                     config.look_interval_seconds):
        return Step(Action.CANARY_LOOK, {"version": candidate,
                                         "test_id": canary_test_id(candidate)},
                    f"canary look due ({days:.2f} of {config.canary_days:g} days)")
    return Wait(f"canary: next look after {config.look_interval_seconds:g} s")


def _ab(state: AutopilotState, config: AutopilotConfig, now: datetime) -> Decision:
    candidate, test = state.candidate, state.ab_test_id
    assert candidate is not None and test is not None
    look = state.last_look
    verdict = look.get("verdict") if look is not None else None
    numbers = {"ab_test_id": test, "look": (look or {}).get("look"),
               "numbers": (look or {}).get("numbers")}
    why = "; ".join((look or {}).get("reasons", []))
    if verdict == "SHIP":
        return Step(Action.PROMOTE, {"version": candidate, "stage": "production",
                                     "ab_test_id": test},
                    f"A/B test {test} concluded SHIP: {why}", numbers)
    if verdict == "ROLLBACK":
        return Step(Action.ROLLBACK, {"version": candidate},
                    f"A/B test {test} concluded ROLLBACK: {why}", numbers)
    if _due(now, state.last_look_at or state.phase_since, config.look_interval_seconds):
        return Step(Action.AB_LOOK, {"version": candidate, "ab_test_id": test},
                    "online A/B look due" + (f" (last: CONTINUE, {why})" if look else ""))
    seen = "CONTINUE" if look is not None else "no look yet"  # the A/B just started
    return Wait(f"A/B test {test}: {seen}; next look after "
                f"{config.look_interval_seconds:g} s")


def decide(state: AutopilotState, seen: Readiness | None, config: AutopilotConfig,
           now: datetime) -> Decision:
    """The next thing to do and why (module docstring; AD1, AD2)."""
    if state.pending is not None:
        raise ValueError(f"step {state.pending.step} ({state.pending.action}) of cycle "
                         f"{state.cycle} is pending: finish it before deciding")
    delivery = _delivery(state, config, now)
    if delivery is not None:
        return delivery
    if state.phase is Phase.PRODUCTION:
        return EndCycle("production", state.candidate,
                        f"{state.candidate} is in production on every node")
    if state.phase is Phase.ROLLED_BACK:
        back = state.registry.production or BASE_VERSION
        return EndCycle("rolled_back", state.candidate,
                        f"{state.candidate} rolled back; every node serves {back}")
    if state.phase is Phase.TRAINING:
        return EndCycle("failed", None, state.train_failed or "training did not complete")
    held = state.registry.get(state.candidate) if state.candidate else None
    if held is not None and held.stage is Stage.ROLLED_BACK:
        return EndCycle("rolled_back", state.candidate,
                        f"{state.candidate} was rolled back outside the autopilot: "
                        f"{held.reason}"[:2000])
    watch = _production_watch(state, config, now)
    if watch is not None:
        return watch
    if state.phase is Phase.WAITING:
        return _waiting(state, seen, config, now)
    if state.phase is Phase.OFFLINE_LOOK:
        candidate = state.candidate
        assert candidate is not None
        look = state.last_look
        if look is None:
            return Step(Action.OFFLINE_LOOK, {
                "version": candidate, "control": state.registry.production or BASE_VERSION,
                "ab_test_id": ab_test_id(candidate)},
                f"candidate {candidate}: score it against production on held-out data")
        reasons = "; ".join(look.get("reasons", []))
        if look.get("verdict") == "ROLLBACK":
            return Step(Action.ROLLBACK, {"version": candidate},
                        f"offline look ROLLBACK: {reasons}", {"numbers": look.get("numbers")})
        return Step(Action.PROMOTE, {"version": candidate, "stage": "canary"},
                    f"offline look {look.get('verdict')}: {reasons}",
                    {"numbers": look.get("numbers")})
    if state.phase is Phase.CANARY:
        return _canary(state, config, now)
    return _ab(state, config, now)
