"""The demo's promotion step: an offline A/B look of a candidate against production, then
the staged promotion that the decision allows.

The look itself is the coordinator's real machinery (an ``ab-only`` Flower run: every node
scores candidate and current adapters on its held-out split and answers only paired
sufficient statistics through its egress guard); this module only sequences it as an
operator would: register the candidate, open a test, look, conclude, promote.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from coordinator.abtest import ABTestLog
from coordinator.federation import LocalFederation, read_run_report
from coordinator.promotion import PromotionLog
from coordinator.registry import AdapterRegistry
from hermes_fed.abtest import Verdict
from hermes_fed.registry.promotion import Stage


def offline_ab_and_promote(
    federation: LocalFederation,
    coordinator_dir: Path,
    run_config: Mapping[str, str | int | float],
    candidate: str,
    production: str | None,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Returns what happened: the test id, the look's verdict and numbers, the new stage."""
    with AdapterRegistry.open(coordinator_dir) as registry:
        promotions = PromotionLog(registry.store)
        promotions.promote(candidate, reason="published by a federated round", actor="demo")
        spec = ABTestLog(registry.store).create(production or "base", candidate, traffic_split=0.1)
    look_config = {**run_config, "ab-only": 1, "num-server-rounds": 1}
    outcome = federation.run(look_config, timeout=900)
    read_run_report(coordinator_dir, outcome.run_id)
    with AdapterRegistry.open(coordinator_dir) as registry:
        abtests = ABTestLog(registry.store)
        promotions = PromotionLog(registry.store)
        status = abtests.get(spec.ab_test_id)
        stats: Mapping[str, Any] = status.looks[-1]["stats"] if status.looks else {}
        verdict = str(stats.get("verdict", Verdict.CONTINUE.value))
        result: dict[str, Any] = {
            "ab_test_id": spec.ab_test_id,
            "control": production or "base",
            "treatment": candidate,
            "verdict": verdict,
            "reasons": list(stats.get("reasons", [])),
            "numbers": stats.get("numbers"),
            "tenants": stats.get("tenants", {}),
            "suppressed": stats.get("suppressed_tenants", []),
            "promoted": False,
        }
        if not status.is_open:
            pass  # a ROLLBACK look concludes the test itself
        elif verdict == Verdict.SHIP.value:
            abtests.conclude(spec.ab_test_id)
            shipped = abtests.shipped_versions()
            while (
                state := promotions.state().get(candidate)
            ) is not None and state.stage is not Stage.PRODUCTION:
                promotions.promote(
                    candidate, reason=f"A/B test {spec.ab_test_id} shipped", shipped=shipped, actor="demo"
                )
            result["promoted"] = True
        else:
            abtests.conclude(
                spec.ab_test_id,
                verdict=Verdict.ROLLBACK,
                reason="inconclusive offline look: the candidate is not promoted",
            )
        state = promotions.state().get(candidate)
        result["stage"] = state.stage.value if state is not None else None
    say(
        f"  offline A/B {spec.ab_test_id}: {verdict} -> {candidate} is {result['stage']}"
        + (" (now in production)" if result["promoted"] else "")
    )
    return result
