"""The autopilot's runner: fold the log, decide, write the intent, act, write the outcome.

One :meth:`Autopilot.step`:

1. fold the coordinator's log (:func:`.state.fold`);
2. a pending intent (a crash between intent and outcome) is finished first, by the same
   executor, which looks in the log for what the step already did: versions published
   after the intent, the candidate's promotion stage, the A/B test's looks, the quality
   stream. So a ``kill -9`` anywhere repeats no finished round, publishes no version twice
   and promotes nothing twice (AR1);
3. otherwise :func:`.decide.decide`; a step's ``AutopilotStepIntended`` is appended at
   the stream version the decision was taken on (two runners cannot both act, invariant 3)
   *before* the executor runs, and ``AutopilotStepCompleted`` after it. Both have event ids
   derived from ``(cycle, step)``, so re-sending either is a no-op.

Invariants (tests cite them)
----------------------------
AR1. For a crash right after any intent, or right after its action, the resumed runner
     ends with the same log (types, steps, versions, promotions) as an uninterrupted one.
AR2. A failing action is an outcome (``ok: false``) with its reason, never a lost intent.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from coordinator.logs.abtest import ABTestLog
from coordinator.logs.promotion import QUALITY_PREFIX, PromotionLog
from coordinator.logs.registry import AdapterRegistry
from coordinator.rounds.looks import online_query
from hermes_fed.abtest import Verdict, quality_trend
from hermes_fed.clock import Clock
from hermes_fed.errors import ABTestError, HermesFedError, IllegalTransitionError
from hermes_fed.events import new_event, to_micros
from hermes_fed.events.coordinator import (
    AutopilotCycleEnded,
    AutopilotStepCompleted,
    AutopilotStepIntended,
    AutopilotWaited,
)
from hermes_fed.federation.delivery import DeployAdapter, DeploySpec
from hermes_fed.federation.queries import AbQuery
from hermes_fed.registry.promotion import Stage
from hermes_fed.serving.plan import BASE_VERSION, TrafficPlan

from .config import AutopilotConfig
from .decide import EndCycle, Observe, Step, Wait, canary_guard, decide
from .federation import Federation
from .notify import Notifier
from .state import FOLDED_TYPES, STREAM, Action, AutopilotState, Intent, fold

logger = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("6f1c2a9e-5b7d-4f0e-9a63-0d7c5e2b8a41")
_ROUND_TYPES = ("RoundStarted", "RoundCompleted", "RoundFailed")
_ORDER = {Stage.CANDIDATE: 0, Stage.CANARY: 1, Stage.AB: 2, Stage.PRODUCTION: 3}
Crash = Callable[[str, Intent], None]
"""Test hook: called ``("intended", intent)`` after the intent is appended and
``("acted", intent)`` after the action, before its outcome (a test raises there)."""


def event_id(cycle: int, step: int, what: str) -> uuid.UUID:
    """The idempotency key of a step's intent or outcome: ``(cycle, step, what)``."""
    return uuid.uuid5(_NAMESPACE, f"autopilot/{cycle}/{step}/{what}")


class StepFailed(HermesFedError):
    """An executor's expected failure: recorded as ``ok: false`` with this reason."""


class Autopilot:
    """Turns the wheel over one coordinator directory (module docstring)."""

    def __init__(self, registry: AdapterRegistry, federation: Federation,
                 config: AutopilotConfig, clock: Clock, *, notifier: Notifier | None = None,
                 crash: Crash | None = None) -> None:
        self.registry = registry
        self.store = registry.store
        self.federation = federation
        self.config = config
        self.clock = clock
        self.notifier = notifier or Notifier(config.webhook_url)
        self.crash = crash
        self.failed = False  # the latest step's outcome was ok: false
        self.round_poll_seconds = 1.0
        self.abtests = ABTestLog(self.store)
        self.promotions = PromotionLog(self.store, config.promotion())

    # -- reading ---------------------------------------------------------------------
    def state(self) -> AutopilotState:
        return fold(self.store.read(types=FOLDED_TYPES))

    # -- writing ---------------------------------------------------------------------
    def _append(self, record: Any, state: AutopilotState, eid: uuid.UUID | None = None,
                seen: int | None = None) -> int:
        event = new_event(record, stream_id=STREAM, event_id=eid,
                          occurred_at=self.clock.now(), metadata={"actor": "autopilot"})
        version = state.stream_version if seen is None else seen
        return int(self.store.append([event], expected_versions={STREAM: version})[0].position)

    # -- one step --------------------------------------------------------------------
    def step(self) -> str:
        """Do one thing (finish a pending step, or decide and act); describe it."""
        state = self.state()
        if state.pending is not None:
            return self._finish(state.pending, state.stream_version)
        now = self.clock.now()
        decision = decide(state, None, self.config, now)
        if isinstance(decision, Observe):
            decision = decide(state, self.federation.poll_triggers(now), self.config, now)
        if isinstance(decision, Wait):
            if decision.record:
                self._append(cast(Any, AutopilotWaited)(cycle=state.cycle, reason=decision.reason,
                                                        numbers=dict(decision.numbers)), state)
            logger.info("cycle=%d action=wait reason=%r", state.cycle, decision.reason)
            return f"wait: {decision.reason}"
        if isinstance(decision, EndCycle):
            self._append(cast(Any, AutopilotCycleEnded)(
                cycle=state.cycle, outcome=decision.outcome, version=decision.version,
                reason=decision.reason), state, event_id(state.cycle, 0, "ended"))
            logger.info("cycle=%d action=end outcome=%s", state.cycle, decision.outcome)
            return f"cycle {state.cycle} ended: {decision.outcome} ({decision.reason})"
        assert isinstance(decision, Step)
        return self._begin(state, decision)

    def run_until_idle(self, max_steps: int = 100) -> list[str]:
        """Steps until the autopilot waits, a step fails (it is tried again at the next
        beat, not in a tight loop), or ``max_steps``."""
        done: list[str] = []
        for _ in range(max_steps):
            self.failed = False
            done.append(self.step())
            if done[-1].startswith("wait:") or self.failed:
                break
        return done

    def run(self, stop: threading.Event) -> None:
        """Every ``cadence_seconds`` until ``stop``: steps until idle. A failed step is
        logged and tried again at the next beat (the log says where it stopped)."""
        while not stop.is_set():
            try:
                self.run_until_idle()
            except HermesFedError as exc:
                logger.error("action=step status=failed error=%s: %s", type(exc).__name__, exc)
            stop.wait(self.config.cadence_seconds)

    def _begin(self, state: AutopilotState, decision: Step) -> str:
        step = state.step + 1
        params = {**dict(decision.params), **self._bookkeeping(state, decision)}
        record = cast(Any, AutopilotStepIntended)(
            cycle=state.cycle, step=step, action=decision.action.value, params=params,
            reason=decision.reason, numbers=dict(decision.numbers))
        position = self._append(record, state, event_id(state.cycle, step, "intended"))
        intent = Intent(state.cycle, step, decision.action, params, decision.reason,
                        dict(decision.numbers), position, self.clock.now())
        logger.info("cycle=%d step=%d action=%s reason=%r", state.cycle, step,
                    decision.action.value, decision.reason)
        if self.crash is not None:
            self.crash("intended", intent)
        return self._finish(intent, state.stream_version + 1)

    def _bookkeeping(self, state: AutopilotState, decision: Step) -> dict[str, Any]:
        """What an executor must know of the log at intent time to resume idempotently."""
        if decision.action is Action.AB_LOOK:
            test = str(decision.params["ab_test_id"])
            return {"looks_before": len(self.abtests.get(test).looks)}
        if decision.action is Action.QUALITY_LOOK:
            version = str(decision.params["version"])
            since = self._quality_since(state, version)
            return {"looks_before": len(self.store.read_stream(f"{QUALITY_PREFIX}{version}")),
                    **({"since_us": to_micros(since)} if since is not None else {})}
        return {}

    def _quality_since(self, state: AutopilotState, version: str) -> datetime | None:
        """Since when to count ``version``'s sessions, on the injected clock (the nodes
        date sessions by it too): the autopilot's last quality look of it, else when the
        autopilot promoted it to production; None when an operator promoted it."""
        last = state.last_quality
        if last is not None and last.get("version") == version and state.last_quality_at:
            return state.last_quality_at
        promoted = [e.occurred_at for e in self.store.read_stream(STREAM)
                    if e.type == "AutopilotStepCompleted" and e.data["action"] == "promote"
                    and e.data["ok"] and e.data["result"].get("version") == version
                    and e.data["result"].get("stage") == "production"]
        return promoted[-1] if promoted else None

    def _finish(self, intent: Intent, seen: int) -> str:
        executor = getattr(self, f"_do_{intent.action.value}")
        try:
            result: dict[str, Any] = executor(intent)
            ok = bool(result.pop("ok", True))
        except (HermesFedError, ValueError, KeyError, OSError) as exc:
            ok, result = False, {"reason": f"{type(exc).__name__}: {exc}"[:1000]}
            logger.error("cycle=%d step=%d action=%s status=failed error=%s", intent.cycle,
                         intent.step, intent.action.value, type(exc).__name__)
        if self.crash is not None:
            self.crash("acted", intent)
        record = cast(Any, AutopilotStepCompleted)(cycle=intent.cycle, step=intent.step,
                                                   action=intent.action.value, ok=ok,
                                                   result=result)
        event = new_event(record, stream_id=STREAM, event_id=event_id(intent.cycle, intent.step,
                                                                      "completed"),
                          occurred_at=self.clock.now(), metadata={"actor": "autopilot"})
        self.store.append([event], expected_versions={STREAM: seen})
        self.failed = not ok
        status = "ok" if ok else f"failed ({result.get('reason', '')})"
        return f"cycle {intent.cycle} step {intent.step} {intent.action.value}: {status}"

    # -- executors: each is idempotent against the log (AR1) --------------------------
    def _do_train(self, intent: Intent) -> dict[str, Any]:
        def trained() -> list[Any]:
            return [v for v in self.registry.versions()
                    if v.position > intent.position and v.lineage.get("mode") != "init"]

        rounds = int(intent.params.get("rounds", 1))
        self._wait_for_rounds_in_flight(intent)
        before = trained()
        if len(before) < rounds:
            parent = before[-1].version if before else intent.params.get("parent")
            self.federation.run_rounds(parent, rounds - len(before))
        after = trained()
        if not after:
            raise StepFailed("the rounds published no version")
        return {"version": after[-1].version, "versions": [v.version for v in after],
                "resumed_after_rounds": len(before),
                "reason": f"{len(after)} round(s) published {after[-1].version}"}

    def rounds_in_flight(self, after: int) -> list[str]:
        """Round ids started after position ``after`` that neither completed nor failed."""
        started: dict[str, None] = {}
        for e in self.store.read(after=after, types=_ROUND_TYPES):
            if e.type == "RoundStarted":
                started[str(e.data["round_id"])] = None
            else:
                started.pop(str(e.data["round_id"]), None)
        return list(started)

    def _wait_for_rounds_in_flight(self, intent: Intent) -> None:
        """A killed autopilot leaves its round run going in the ServerApp: wait for it to
        finish (publishing its version) rather than start a second one (AR1)."""
        deadline = time.monotonic() + self.config.node_timeout_seconds + 120.0
        while (flying := self.rounds_in_flight(intent.position)) \
                and time.monotonic() < deadline:
            logger.info("cycle=%d step=%d action=train waiting_for=%s", intent.cycle,
                        intent.step, ",".join(flying))
            threading.Event().wait(self.round_poll_seconds)
        if flying:
            raise StepFailed(f"round(s) {', '.join(flying)} started after this step's intent "
                             "never finished; check the SuperLink's runs")

    def _register(self, version: str, reason: str) -> None:
        if self.promotions.state().get(version) is None:
            self.promotions.promote(version, reason=reason, actor="autopilot")

    def _do_offline_look(self, intent: Intent) -> dict[str, Any]:
        version, test = str(intent.params["version"]), str(intent.params["ab_test_id"])
        self._register(version, f"cycle {intent.cycle}: trained")
        try:
            self.abtests.get(test)
        except ABTestError:
            self.abtests.create(str(intent.params["control"]), version,
                                traffic_split=self.config.ab_share,
                                min_samples=self.config.ab_min_samples,
                                duration_days=self.config.ab_duration_days, ab_test_id=test,
                                now=self.clock.now())
        status = self.abtests.get(test)
        offline = [look for look in status.looks if look["stats"].get("mode") == "offline"]
        if not offline:
            lineage = self.registry.get(version).lineage
            s = status.spec
            query = AbQuery("offline", s.ab_test_id, s.control, s.treatment,
                            float(s.traffic_split), min_samples=s.min_samples,
                            duration_days=s.duration_days, rank=int(lineage.get("r", 8)),
                            alpha=float(lineage.get("alpha", 16.0)),
                            max_length=int(lineage.get("max_length", 256)))
            seen = self.federation.offline_look(query)
            self.abtests.record_offline_look(test, seen.paired, suppressed=seen.missing,
                                             now=self.clock.now())
            offline = [look for look in self.abtests.get(test).looks
                       if look["stats"].get("mode") == "offline"]
        stats = offline[-1]["stats"]
        return {"ab_test_id": test, "verdict": stats["verdict"], "reasons": stats["reasons"],
                "numbers": stats.get("numbers"), "suppressed": stats["suppressed_tenants"],
                "reason": f"offline {stats['verdict']}"}

    def _do_promote(self, intent: Intent) -> dict[str, Any]:
        version, target = str(intent.params["version"]), Stage(intent.params["stage"])
        facts = []
        self._register(version, f"cycle {intent.cycle}: trained")
        while True:
            current = self.promotions.state().get(version)
            assert current is not None
            if current.stage not in _ORDER:
                raise StepFailed(f"{version} is {current.stage.value}: cannot reach "
                                 f"{target.value}")
            if _ORDER[current.stage] >= _ORDER[target]:
                break
            fact = self.promotions.promote(version, reason=intent.reason[:2000],
                                           shipped=self.abtests.shipped_versions(),
                                           actor="autopilot")
            facts.append(getattr(fact, "stage", target).value)
        if facts:
            self.notifier.notify({"event": "promoted", "version": version,
                                  "stage": target.value, "cycle": intent.cycle,
                                  "reason": intent.reason, "at": self.clock.now().isoformat()})
        return {"version": version, "stage": target.value, "promoted": facts,
                "reason": f"{version} in {target.value}"}

    def _online(self, query: AbQuery) -> tuple[Any, Any]:
        seen = self.federation.online_look(query)
        return seen.arms, seen.missing

    def _do_canary_look(self, intent: Intent) -> dict[str, Any]:
        version = str(intent.params["version"])
        control = self.promotions.state().production or BASE_VERSION
        days = max(1, int(-(-self.config.canary_days // 1)))
        query = AbQuery("online", str(intent.params["test_id"]), control, version,
                        self.config.canary_share, min_samples=self.config.canary_min_samples,
                        duration_days=days)
        arms, missing = self._online(query)
        guard = canary_guard(list(arms), self.config)
        return {**guard, "missing": list(missing),
                "reason": "guardrail breached" if guard["breached"] else "guardrail clean"}

    def _do_ab_look(self, intent: Intent) -> dict[str, Any]:
        test = str(intent.params["ab_test_id"])
        status = self.abtests.get(test)
        if len(status.looks) <= int(intent.params.get("looks_before", 0)) and status.is_open:
            arms, missing = self._online(online_query(status))
            self.abtests.record_online_look(test, list(arms), suppressed=list(missing),
                                            now=self.clock.now())
            status = self.abtests.get(test)
        if status.concluded is not None:
            verdict = str(status.concluded["decision"])
            reasons = list(status.concluded["numbers"].get("reasons", []))
        else:
            verdict, reasons = str(status.looks[-1]["stats"]["verdict"]), list(
                status.looks[-1]["stats"].get("reasons", []))
        last = status.looks[-1]["stats"] if status.looks else {}
        return {"ab_test_id": test, "verdict": verdict, "reasons": reasons,
                "look": len(status.looks), "numbers": last.get("numbers"),
                "suppressed": last.get("suppressed_tenants", []), "reason": verdict}

    def _do_rollback(self, intent: Intent) -> dict[str, Any]:
        version = str(intent.params["version"])
        current = self.promotions.state().get(version)
        if current is None:
            self._register(version, f"cycle {intent.cycle}: trained")
            current = self.promotions.state().get(version)
        assert current is not None
        if current.stage is not Stage.ROLLED_BACK:
            self.promotions.rollback(version, intent.reason[:2000], actor="autopilot")
            self.notifier.notify({"event": "rolled_back", "version": version,
                                  "cycle": intent.cycle, "reason": intent.reason,
                                  "to_version": self.promotions.state().production,
                                  "at": self.clock.now().isoformat()})
        for status in self.abtests.open_tests():
            if status.spec.treatment == version:
                try:
                    self.abtests.conclude(status.spec.ab_test_id, verdict=Verdict.ROLLBACK,
                                          reason=f"autopilot: {intent.reason}"[:500])
                except (ABTestError, IllegalTransitionError):
                    logger.info("ab_test_id=%s action=conclude status=skipped",
                                status.spec.ab_test_id)
        back = self.promotions.state().production
        return {"version": version, "to_version": back,
                "reason": f"{version} rolled back; production {back or BASE_VERSION}"}

    def _do_deploy(self, intent: Intent) -> dict[str, Any]:
        from hermes_fed.training.adapter import load_adapter

        plan = TrafficPlan.from_dict(intent.params["plan"])
        adapters, tensors = [], []
        for version in plan.versions:
            if version == BASE_VERSION:
                continue
            entry = self.registry.get(version)
            saved = load_adapter(self.registry.path(version))
            adapters.append(DeployAdapter(version, entry.sha256, saved.config.to_dict(),
                                          dict(entry.lineage)))
            tensors.append(self.registry.load(version))
        acks = self.federation.deploy(DeploySpec(plan, tuple(adapters)), tensors)
        applied = {a.tenant: a.applied_plan for a in acks if a.applied_plan}
        failed = sorted(a.tenant for a in acks if a.applied_plan != plan.test_id)
        errors = {a.tenant: a.error or f"applies {a.applied_plan}" for a in acks
                  if a.tenant in failed}
        ok = bool(acks) and not failed
        why = (f"every node ({len(acks)}) applies {plan.test_id}" if ok else
               "no node answered" if not acks else
               f"{', '.join(failed)} did not apply {plan.test_id}; their users stay on "
               "their last applied plan")
        return {"ok": ok, "plan_test_id": plan.test_id, "applied": applied, "failed": failed,
                "errors": errors, "nodes": len(acks),
                "installed": {a.tenant: a.installed for a in acks}, "reason": why}

    def _do_quality_look(self, intent: Intent) -> dict[str, Any]:
        version = str(intent.params["version"])
        stream = f"{QUALITY_PREFIX}{version}"
        promoted = [h for h in self.promotions.history(version)
                    if h.event_type == "ModelPromoted" and h.data["stage"] == "production"]
        if not promoted:
            raise StepFailed(f"{version} was never promoted to production")
        if len(self.store.read_stream(stream)) <= int(intent.params.get("looks_before", 0)):
            looks = self.store.read_stream(stream)
            since_us = intent.params.get("since_us") or to_micros(
                looks[-1].recorded_at if looks else promoted[-1].recorded_at)
            seen = self.federation.version_quality(version, int(since_us))
            total = seen.total
            self.promotions.record_quality(version, {
                "n": total.n, "sum": total.sum, "sumsq": total.sumsq,
                "mean": total.mean if total.n else None, "tenants": seen.tenants,
                "suppressed_tenants": list(seen.missing)})
        scores = [float(e.data["stats"]["mean"]) for e in self.store.read_stream(stream)
                  if e.position > promoted[-1].position
                  and e.data["stats"].get("mean") is not None]
        last = self.store.read_stream(stream)[-1].data["stats"]
        body: dict[str, Any] = {"version": version, "mean": last.get("mean"),
                                "n": last.get("n"), "looks": len(scores), "breached": False}
        if scores:
            trend = quality_trend(scores, None, self.config.quality_guard())
            body.update(breached=trend.breached, slope=trend.slope, drop=trend.drop,
                        recent_mean=trend.recent_mean, baseline=trend.baseline,
                        reason=trend.reason or "quality holds")
        else:
            body["reason"] = "no scored session yet"
        return body

