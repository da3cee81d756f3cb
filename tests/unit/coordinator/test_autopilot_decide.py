"""The autopilot's transitions as pure tests over folded logs (every state, every guard).

Each test writes the events a coordinator log would hold (the autopilot's intents and
outcomes, the promotion facts), folds them (AP1) and asks :func:`decide` what comes next;
no store, clock or network.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coordinator.autopilot.config import AutopilotConfig
from coordinator.autopilot.decide import (
    EndCycle,
    Observe,
    Readiness,
    Step,
    Wait,
    canary_guard,
    decide,
    desired_plan,
)
from coordinator.autopilot.state import Action, AutopilotState, Phase, fold
from hermes_fed.abtest import ArmStats, TenantArms
from hermes_fed.federation.delivery import TriggerReport

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CFG = AutopilotConfig(min_nodes=2, stale_days=14, canary_days=1, look_interval_seconds=3600,
                      quality_interval_seconds=86400, deploy_retry_seconds=60)
V1, V2 = "v1-aaaaaaaaaaaa", "v2-bbbbbbbbbbbb"


@dataclass(frozen=True)
class Entry:
    position: int
    type: str
    data: dict[str, Any]
    occurred_at: datetime


@dataclass
class Log:
    """Events as the runner writes them, dated by a hand-moved clock."""

    entries: list[Entry] = field(default_factory=list)
    at: datetime = T0
    cycle: int = 1
    step: int = 0

    def add(self, kind: str, **data: Any) -> Log:
        self.entries.append(Entry(len(self.entries) + 1, kind, data, self.at))
        return self

    def later(self, **delta: float) -> Log:
        self.at += timedelta(**delta)
        return self

    def did(self, action: str, result: dict[str, Any] | None = None, ok: bool = True,
            **params: Any) -> Log:
        self.step += 1
        self.add("AutopilotStepIntended", cycle=self.cycle, step=self.step, action=action,
                 params=params, reason="test", numbers={})
        return self.add("AutopilotStepCompleted", cycle=self.cycle, step=self.step,
                        action=action, ok=ok, result=result or {})

    def promoted(self, version: str, stage: str, fraction: float) -> Log:
        return self.add("ModelPromoted", version=version, stage=stage,
                        traffic_fraction=fraction, reason="test")

    def rolled_back(self, version: str, to: str | None) -> Log:
        return self.add("ModelRolledBack", version=version, to_version=to, reason="test")

    def deployed(self, state_plan: dict[str, Any] | None = None) -> Log:
        plan = state_plan or desired_plan(self.state().registry).to_dict()
        return self.did("deploy", {"applied": {"acme": plan["test_id"]}}, plan=plan)

    def ended(self, outcome: str, version: str | None) -> Log:
        self.add("AutopilotCycleEnded", cycle=self.cycle, outcome=outcome, version=version,
                 reason="test")
        self.cycle += 1
        self.step = 0
        return self

    def state(self) -> AutopilotState:
        return fold(self.entries)


def _readiness(**train: bool) -> Readiness:
    return Readiness(tuple(TriggerReport(t, v, "volume" if v else "wait", new_scored=500)
                           for t, v in train.items()))


def _waiting() -> Log:
    """A fresh autopilot that delivered the base plan."""
    return Log().deployed()


def _in_offline_look() -> Log:
    return _waiting().did("train", {"version": V1}, parent=None, rounds=1)


def _in_canary() -> Log:
    log = _in_offline_look().did("offline_look", {"verdict": "SHIP", "reasons": ["better"],
                                                  "ab_test_id": f"ab-{V1}"})
    log.promoted(V1, "candidate", 0.0).promoted(V1, "canary", 0.01)
    return log.did("promote", {}, version=V1, stage="canary").deployed()


def _in_ab() -> Log:
    log = _in_canary().later(days=1).did("canary_look", {"breached": False, "n_treatment": 40})
    log.promoted(V1, "ab", 0.09)
    return log.did("promote", {}, version=V1, stage="ab", ab_test_id=f"ab-{V1}").deployed()


def _in_production() -> Log:
    log = _in_ab().later(days=1).did("ab_look", {"verdict": "SHIP", "reasons": ["lift"]})
    log.promoted(V1, "production", 1.0)
    return log.did("promote", {}, version=V1, stage="production").deployed().ended(
        "production", V1)


# --- AP1 / AD1 ---------------------------------------------------------------------------
def test_ap1_folding_the_same_events_twice_gives_equal_states() -> None:
    log = _in_production()
    assert fold(log.entries) == fold(list(log.entries))
    assert fold(log.entries).phase is Phase.WAITING and fold(log.entries).cycle == 2


def test_ad1_decide_refuses_while_a_step_is_pending() -> None:
    log = _waiting()
    log.add("AutopilotStepIntended", cycle=1, step=2, action="train", params={},
            reason="r", numbers={})
    with pytest.raises(ValueError, match="pending"):
        decide(log.state(), None, CFG, log.at)


# --- delivery ----------------------------------------------------------------------------
def test_a_fresh_autopilot_first_delivers_the_base_plan() -> None:
    decision = decide(Log().state(), None, CFG, T0)
    assert isinstance(decision, Step) and decision.action is Action.DEPLOY
    assert decision.params["plan"]["test_id"] == "prod-base"


def test_a_node_that_does_not_acknowledge_is_named_and_the_deploy_retried() -> None:
    # Prepare: the canary plan was sent; globex could not apply it
    log = _in_canary()
    log.entries = log.entries[:-2]  # drop the successful deploy
    plan = desired_plan(log.state().registry).to_dict()
    log.step -= 1
    log.did("deploy", {"applied": {"acme": plan["test_id"]}, "failed": ["globex"]},
            ok=False, plan=plan)
    state = log.state()
    # Execute / Assert: within the retry delay it waits, naming globex; after it, resends
    soon = decide(state, None, CFG, log.at + timedelta(seconds=30))
    assert isinstance(soon, Wait) and "globex" in soon.reason
    assert state.node_plans == {"acme": plan["test_id"]}
    again = decide(state, None, CFG, log.at + timedelta(seconds=61))
    assert isinstance(again, Step) and again.action is Action.DEPLOY
    assert again.numbers["attempt"] == 2 and again.numbers["not_acknowledged"] == ["globex"]
    assert state.phase is Phase.CANARY  # the cycle does not move on


def test_plans_follow_the_promotion_state() -> None:
    canary = desired_plan(_in_canary().state().registry)
    assert canary.test_id == f"canary-{V1}"
    assert [(a.name, a.version, a.share) for a in canary.arms] == [
        ("control", "base", 0.99), ("treatment", V1, 0.01)]
    ab = desired_plan(_in_ab().state().registry)
    assert ab.test_id == f"ab-{V1}"
    assert [(a.version, round(a.share, 6)) for a in ab.arms] == [("base", 0.91), (V1, 0.09)]
    assert desired_plan(_in_production().state().registry).test_id == f"prod-{V1}"


# --- waiting -----------------------------------------------------------------------------
def test_waiting_asks_the_nodes_first() -> None:
    assert isinstance(decide(_waiting().state(), None, CFG, T0), Observe)


def test_min_nodes_not_met_waits_and_records_the_readiness_once() -> None:
    log = _waiting()
    seen = _readiness(acme=True, globex=False, initech=False)
    first = decide(log.state(), seen, CFG, log.at)
    assert isinstance(first, Wait) and first.record
    assert "1 of 3 nodes say train (< min_nodes 2)" in first.reason
    assert first.numbers["tenants"]["acme"]["rule"] == "volume"
    log.add("AutopilotWaited", cycle=1, reason=first.reason, numbers=dict(first.numbers))
    again = decide(log.state(), seen, CFG, log.at)
    assert isinstance(again, Wait) and not again.record  # nothing new: no event
    assert log.state().readiness["globex"]["train"] is False


def test_min_nodes_met_trains_from_production() -> None:
    log = _in_production()
    log.did("quality_look", {"version": V1, "breached": False})
    decision = decide(log.state(), _readiness(acme=True, globex=True, initech=False), CFG,
                      log.at)
    assert isinstance(decision, Step) and decision.action is Action.TRAIN
    assert decision.params == {"parent": V1, "rounds": 1}
    assert "2 of 3 nodes say train (acme, globex)" in decision.reason


@pytest.mark.parametrize(("days", "trains"), [(13.9, False), (14.0, True)])
def test_staleness_forces_training(days: float, trains: bool) -> None:
    log = _waiting()
    decision = decide(log.state(), _readiness(acme=False), CFG, T0 + timedelta(days=days))
    assert isinstance(decision, Step) is trains
    if trains:
        assert isinstance(decision, Step) and decision.action is Action.TRAIN
        assert decision.reason.startswith(
            "stale: no training since the autopilot started 14.0 days ago")


def test_a_failed_training_ends_the_cycle() -> None:
    log = _waiting().did("train", {"reason": "FederationError: 0 of 2 nodes"}, ok=False)
    decision = decide(log.state(), None, CFG, log.at)
    assert isinstance(decision, EndCycle) and decision.outcome == "failed"
    assert "0 of 2 nodes" in decision.reason


# --- offline look ------------------------------------------------------------------------
def test_a_trained_candidate_is_looked_at_offline() -> None:
    decision = decide(_in_offline_look().state(), None, CFG, T0)
    assert isinstance(decision, Step) and decision.action is Action.OFFLINE_LOOK
    assert decision.params == {"version": V1, "control": "base", "ab_test_id": f"ab-{V1}"}


@pytest.mark.parametrize(("verdict", "action", "stage"), [
    ("ROLLBACK", Action.ROLLBACK, None), ("SHIP", Action.PROMOTE, "canary"),
    ("CONTINUE", Action.PROMOTE, "canary")])
def test_the_offline_verdict_decides(verdict: str, action: Action, stage: str | None) -> None:
    log = _in_offline_look().did("offline_look", {"verdict": verdict, "reasons": ["why"]})
    decision = decide(log.state(), None, CFG, log.at)
    assert isinstance(decision, Step) and decision.action is action
    assert decision.params.get("stage") == stage and "why" in decision.reason


def test_an_offline_rollback_ends_the_cycle_rolled_back_without_a_deploy() -> None:
    log = _in_offline_look().did("offline_look", {"verdict": "ROLLBACK", "reasons": []})
    log.promoted(V1, "candidate", 0.0).rolled_back(V1, None)
    log.did("rollback", {}, version=V1)
    assert log.state().phase is Phase.ROLLED_BACK
    decision = decide(log.state(), None, CFG, log.at)
    assert isinstance(decision, EndCycle) and decision.outcome == "rolled_back"


# --- canary ------------------------------------------------------------------------------
def test_the_canary_waits_a_look_interval_then_looks() -> None:
    log = _in_canary()
    assert isinstance(decide(log.state(), None, CFG, log.at), Wait)
    later = decide(log.state(), None, CFG, log.at + timedelta(hours=1))
    assert isinstance(later, Step) and later.action is Action.CANARY_LOOK
    assert later.params["test_id"] == f"canary-{V1}"


def test_a_canary_guardrail_breach_rolls_back() -> None:
    log = _in_canary().later(hours=1).did("canary_look", {
        "breached": True, "reasons": ["tenant acme significantly harmed"], "harmed": ["acme"]})
    decision = decide(log.state(), None, CFG, log.at)
    assert isinstance(decision, Step) and decision.action is Action.ROLLBACK
    assert "acme significantly harmed" in decision.reason


def test_a_clean_canary_moves_to_ab_only_after_a_look_covering_canary_days() -> None:
    log = _in_canary().later(hours=23).did("canary_look", {"breached": False})
    at_day = decide(log.state(), None, CFG, log.at + timedelta(hours=1))
    assert isinstance(at_day, Step) and at_day.action is Action.CANARY_LOOK
    log.later(hours=1).did("canary_look", {"breached": False, "n_treatment": 30})
    decision = decide(log.state(), None, CFG, log.at)
    assert isinstance(decision, Step) and decision.action is Action.PROMOTE
    assert decision.params == {"version": V1, "stage": "ab", "ab_test_id": f"ab-{V1}"}


# --- online A/B --------------------------------------------------------------------------
@pytest.mark.parametrize(("verdict", "action"), [("SHIP", Action.PROMOTE),
                                                 ("ROLLBACK", Action.ROLLBACK)])
def test_the_online_verdict_decides(verdict: str, action: Action) -> None:
    log = _in_ab().later(hours=1).did("ab_look", {"verdict": verdict, "reasons": ["r"]})
    decision = decide(log.state(), None, CFG, log.at)
    assert isinstance(decision, Step) and decision.action is action
    if verdict == "SHIP":
        assert decision.params["stage"] == "production"


def test_an_online_continue_stays_and_looks_again_later() -> None:
    started = _in_ab()
    fresh = decide(started.state(), None, CFG, started.at)
    assert isinstance(fresh, Wait) and "no look yet" in fresh.reason  # not "CONTINUE"
    log = started.later(hours=1).did("ab_look", {"verdict": "CONTINUE", "reasons": ["n"]})
    waiting = decide(log.state(), None, CFG, log.at)
    assert isinstance(waiting, Wait) and "CONTINUE" in waiting.reason
    again = decide(log.state(), None, CFG, log.at + timedelta(hours=1))
    assert isinstance(again, Step) and again.action is Action.AB_LOOK
    assert log.state().phase is Phase.AB


def test_a_delivered_production_plan_ends_the_cycle() -> None:
    log = _in_ab().later(hours=1).did("ab_look", {"verdict": "SHIP", "reasons": []})
    log.promoted(V1, "production", 1.0).did("promote", {}, version=V1, stage="production")
    first = decide(log.state(), None, CFG, log.at)
    assert isinstance(first, Step) and first.action is Action.DEPLOY
    log.deployed()
    decision = decide(log.state(), None, CFG, log.at)
    assert isinstance(decision, EndCycle) and decision.outcome == "production"
    assert decision.version == V1


# --- production watch --------------------------------------------------------------------
def test_production_quality_is_looked_at_every_interval() -> None:
    log = _in_production()
    first = decide(log.state(), None, CFG, log.at)
    assert isinstance(first, Step) and first.action is Action.QUALITY_LOOK
    log.did("quality_look", {"version": V1, "breached": False})
    assert isinstance(decide(log.state(), None, CFG, log.at), Observe)
    due = decide(log.state(), None, CFG, log.at + timedelta(days=1))
    assert isinstance(due, Step) and due.action is Action.QUALITY_LOOK


def test_production_degradation_rolls_back_to_the_previous_version() -> None:
    # Prepare: V2 went to production after V1; its quality breached the guard
    log = _in_production()
    log.promoted(V2, "candidate", 0.0).promoted(V2, "canary", 0.01).promoted(V2, "ab", 0.09)
    log.promoted(V2, "production", 1.0)
    log.deployed().did("quality_look", {"version": V2, "breached": True,
                                        "reason": "mean quality fell 8% below baseline",
                                        "drop": 0.08})
    decision = decide(log.state(), None, CFG, log.at)
    assert isinstance(decision, Step) and decision.action is Action.ROLLBACK
    assert decision.params == {"version": V2} and "fell 8%" in decision.reason
    log.rolled_back(V2, V1).did("rollback", {}, version=V2)
    after = decide(log.state(), None, CFG, log.at)
    assert isinstance(after, Step) and after.action is Action.DEPLOY
    assert after.params["plan"]["test_id"] == f"prod-{V1}"


# --- the canary guardrail itself ---------------------------------------------------------
def _arms(n: int, mean: float, sd: float) -> ArmStats:
    return ArmStats(n, n * mean, (n - 1) * sd * sd + n * mean * mean)


def test_canary_guard_names_a_harmed_tenant_and_the_pooled_drop() -> None:
    arms = [TenantArms("acme", _arms(500, 0.6, 0.1), _arms(50, 0.5, 0.1)),
            TenantArms("globex", _arms(500, 0.6, 0.1), _arms(50, 0.6, 0.1))]
    guard = canary_guard(arms, CFG)
    assert guard["breached"] and guard["harmed"] == ["acme"]
    # pooled: control 0.6, treatment (25 + 30) / 100 = 0.55 -> drop 1/12
    assert guard["drop"] == pytest.approx((0.6 - 0.55) / 0.6)
    clean = canary_guard([TenantArms("acme", _arms(500, 0.6, 0.1), _arms(50, 0.6, 0.1))], CFG)
    assert not clean["breached"] and clean["reasons"] == []


def test_a_canary_too_small_to_judge_goes_on_until_canary_max_days() -> None:
    # Prepare: a clean look covering canary_days, but 5 candidate sessions (< 20)
    cfg = AutopilotConfig(**{**CFG.to_dict(), "canary_max_days": 3.0})
    log = _in_canary().later(days=1).did("canary_look", {"breached": False, "n_treatment": 5})
    # Execute / Assert: it keeps looking ...
    more = decide(log.state(), None, cfg, log.at + timedelta(hours=1))
    assert isinstance(more, Step) and more.action is Action.CANARY_LOOK
    # ... and after canary_max_days it moves on, saying why
    log.later(days=2).did("canary_look", {"breached": False, "n_treatment": 9})
    decision = decide(log.state(), None, cfg, log.at)
    assert isinstance(decision, Step) and decision.params["stage"] == "ab"
    assert decision.reason.startswith("canary saw 9 candidate sessions in 3.00 days")


def test_a_candidate_an_operator_rolled_back_ends_the_cycle() -> None:
    log = _in_canary()
    log.rolled_back(V1, None)  # `hermes-fed model rollback` by hand
    first = decide(log.state(), None, CFG, log.at)
    assert isinstance(first, Step) and first.action is Action.DEPLOY  # back to base first
    log.deployed()
    decision = decide(log.state(), None, CFG, log.at)
    assert isinstance(decision, EndCycle) and decision.outcome == "rolled_back"
    assert "rolled back outside the autopilot: test" in decision.reason


# --- what the next cycle trains from -----------------------------------------------------
def _rolled_back_online(rule: str) -> Log:
    """Cycle 1's candidate rolled back by its online A/B (the look's rule named), the base
    plan delivered again and the cycle ended."""
    log = _in_ab().later(days=4).did("ab_look", {"verdict": "ROLLBACK", "reasons": [rule],
                                                  "numbers": {"rule": rule}})
    log.rolled_back(V1, None)
    log.did("rollback", {}, version=V1)
    return log.deployed().ended("rolled_back", V1)


def _next_training(log: Log, config: AutopilotConfig = CFG) -> Step:
    decision = decide(log.state(), _readiness(acme=True, globex=True), config, log.at)
    assert isinstance(decision, Step) and decision.action is Action.TRAIN, decision
    return decision


def test_after_an_inconclusive_ab_the_next_cycle_trains_on_from_its_candidate() -> None:
    step = _next_training(_rolled_back_online("inconclusive"))
    assert step.params == {"parent": V1, "rounds": 1}
    assert f"training on from {V1}" in step.numbers["parent"]
    # what users get is still decided against production: the plan is the base's
    assert desired_plan(_rolled_back_online("inconclusive").state().registry).test_id == "prod-base"


@pytest.mark.parametrize("rule", ["harm", "worse", "futility", "srm"])
def test_after_any_other_online_rollback_the_next_cycle_trains_from_production(rule: str) -> None:
    step = _next_training(_rolled_back_online(rule))
    assert step.params == {"parent": None, "rounds": 1} and "parent" not in step.numbers


def test_carrying_forward_can_be_switched_off() -> None:
    off = AutopilotConfig(min_nodes=2, continue_inconclusive=False)
    assert _next_training(_rolled_back_online("inconclusive"), off).params["parent"] is None


def test_a_canary_or_offline_rollback_carries_nothing_forward() -> None:
    log = _in_canary().later(hours=2).did("canary_look", {"breached": True, "reasons": ["x"]})
    log.rolled_back(V1, None)
    log.did("rollback", {}, version=V1)
    log.deployed().ended("rolled_back", V1)
    assert _next_training(log).params["parent"] is None


def test_a_carried_candidate_is_dropped_once_production_changed() -> None:
    # cycle 1 inconclusive (trained from the base); cycle 2 trains on from V1 and V2 reaches
    # production; cycle 3 trains from V2, not from V1
    log = _rolled_back_online("inconclusive")
    log.did("train", {"version": V2}, parent=V1, rounds=1)
    log.did("offline_look", {"verdict": "SHIP", "reasons": ["b"], "ab_test_id": f"ab-{V2}"})
    log.promoted(V2, "candidate", 0.0).promoted(V2, "canary", 0.01)
    log.did("promote", {}, version=V2, stage="canary").deployed()
    log.later(days=1).did("canary_look", {"breached": False, "n_treatment": 40})
    log.promoted(V2, "ab", 0.09)
    log.did("promote", {}, version=V2, stage="ab", ab_test_id=f"ab-{V2}").deployed()
    log.later(days=1).did("ab_look", {"verdict": "SHIP", "reasons": ["lift"],
                                       "numbers": {"rule": "ship"}})
    log.promoted(V2, "production", 1.0)
    log.did("promote", {}, version=V2, stage="production").deployed().ended("production", V2)
    log.did("quality_look", {"version": V2, "breached": False})
    assert log.state().carry_forward is None
    assert _next_training(log).params["parent"] == V2
    # and a stale carry (trained from another production) is ignored by decide itself
    stale = replace(log.state(), carry_forward=(V1, None))
    decision = decide(stale, _readiness(acme=True, globex=True), CFG, log.at)
    assert isinstance(decision, Step) and decision.params["parent"] == V2
