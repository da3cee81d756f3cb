"""The demo's promotion steps: an offline A/B look gates a candidate into the live stages,
an online A/B on real (simulated) traffic gates it into production.

1. ``offline_look``: the candidate is registered and a test ``production vs candidate`` is
   opened; an ``ab-only`` Flower run has every node score both adapters on its held-out
   split and answer paired sufficient statistics through its egress guard. SHIP moves the
   candidate ``candidate -> canary -> ab``; the test stays open for its online phase.
   Anything else ends the test and the candidate stays a candidate.
2. The demo then serves the test's users by arm (``examples.flywheel.sessions.ArmRouting``:
   each node's keyed-hash ``AssignVariant``), and ``online_look`` runs another ``ab-only``
   look: now every node answers per-arm statistics of its users' session quality (CUPED
   on the pre-period), the coordinator combines tenants and runs its sequential test.
   SHIP concludes the test (the look does) and promotes ``ab -> production``; ROLLBACK withdraws the
   treatment (the look itself does that); CONTINUE keeps the test open for the next round.

The looks are the coordinator's real machinery; this module only sequences them as an
operator would. A demo round stands for a week of traffic: the demo advances the clock it
injects into the coordinator (``hermes_fed.clock``) by seven days a round, so the test's
minimum duration and its sample-size guard are real gates, not skipped ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from coordinator.deploy.local_federation import LocalFederation, read_run_report
from coordinator.logs.abtest import ABTestLog
from coordinator.logs.promotion import PromotionLog
from coordinator.logs.registry import AdapterRegistry
from hermes_fed.abtest import Verdict
from hermes_fed.registry.promotion import Stage

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class AbSettings:
    """How the demo's tests are opened (the demo's traffic is tiny, hence the split)."""

    traffic_split: float = 0.5
    min_samples: int = 30  # users per arm summed over tenants
    duration_days: int = 7  # a demo round stands for a week: the first online look decides


def _look(federation: LocalFederation, coordinator_dir: Path, run_config: Mapping[str, Any],
          ab_test_id: str) -> dict[str, Any]:
    """One ``ab-only`` run; the test's last look as the report shows it."""
    outcome = federation.run({**run_config, "ab-only": 1, "rounds": 1}, timeout=900)
    read_run_report(coordinator_dir, outcome.run_id)
    with AdapterRegistry.open(coordinator_dir) as registry:
        status = ABTestLog(registry.store).get(ab_test_id)
    look: Mapping[str, Any] = status.looks[-1] if status.looks else {}
    stats: Mapping[str, Any] = look.get("stats", {})
    return {
        "ab_test_id": ab_test_id,
        "control": status.spec.control,
        "treatment": status.spec.treatment,
        "mode": stats.get("mode"),
        "verdict": str(stats.get("verdict", Verdict.CONTINUE.value)),
        "reasons": list(stats.get("reasons", [])),
        "numbers": stats.get("numbers"),
        "tenants": stats.get("tenants", {}),
        "suppressed": stats.get("suppressed_tenants", []),
        "open": status.is_open,
        "promoted": False,
    }


def _stage(promotions: PromotionLog, version: str) -> str | None:
    state = promotions.state().get(version)
    return state.stage.value if state is not None else None


def offline_look(federation: LocalFederation, coordinator_dir: Path,
                 run_config: Mapping[str, Any], candidate: str, production: str | None,
                 settings: AbSettings, say: Say, now: datetime | None = None) -> dict[str, Any]:
    """Open ``production vs candidate``, look offline; SHIP -> the candidate goes live (ab)."""
    with AdapterRegistry.open(coordinator_dir) as registry:
        PromotionLog(registry.store).promote(candidate, reason="published by a federated round",
                                             actor="demo")
        spec = ABTestLog(registry.store).create(
            production or "base", candidate, traffic_split=settings.traffic_split,
            min_samples=settings.min_samples, duration_days=settings.duration_days, now=now)
    result = _look(federation, coordinator_dir, run_config, spec.ab_test_id)
    with AdapterRegistry.open(coordinator_dir) as registry:
        abtests, promotions = ABTestLog(registry.store), PromotionLog(registry.store)
        if result["open"] and result["verdict"] == Verdict.SHIP.value:
            for stage in (Stage.CANARY, Stage.AB):
                promotions.promote(candidate, reason=f"offline look of {spec.ab_test_id} shipped: "
                                   f"{stage.value}", actor="demo")
            result["online"] = True
        elif result["open"]:
            abtests.conclude(spec.ab_test_id, verdict=Verdict.ROLLBACK,
                             reason="the offline look did not ship: the candidate stays a candidate")
            result["open"] = False
        result["stage"] = _stage(promotions, candidate)
    say(f"  offline A/B {spec.ab_test_id}: {result['verdict']} -> {candidate} is {result['stage']}"
        + (f" (online A/B next round, {settings.traffic_split:.0%} of users)"
           if result.get("online") else ""))
    return result


def online_look(federation: LocalFederation, coordinator_dir: Path,
                run_config: Mapping[str, Any], ab_test_id: str, sim_days: float,
                say: Say) -> dict[str, Any]:
    """Look at the test's online arms; SHIP -> conclude and promote to production."""
    result = _look(federation, coordinator_dir, run_config, ab_test_id)
    treatment = result["treatment"]
    with AdapterRegistry.open(coordinator_dir) as registry:
        abtests, promotions = ABTestLog(registry.store), PromotionLog(registry.store)
        if result["verdict"] == Verdict.SHIP.value:
            if result["open"]:  # an online look concludes SHIP itself; conclude if it did not
                abtests.conclude(ab_test_id)
            promotions.promote(treatment, reason=f"A/B test {ab_test_id} shipped",
                               shipped=abtests.shipped_versions(), actor="demo")
            result["open"], result["promoted"] = False, True
        result["stage"] = _stage(promotions, treatment)
    say(f"  online A/B {ab_test_id} (day {sim_days:g}): {result['verdict']} -> {treatment} is "
        f"{result['stage']}" + (" (now in production)" if result["promoted"] else ""))
    return result
