"""Staged promotion in the coordinator's log (SQLite): PR1-PR2, automatic rollbacks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.logs.promotion import PROMOTION_STREAM, PromotionLog
from coordinator.logs.registry import AdapterRegistry
from hermes_fed.abtest import QualityGuardConfig
from hermes_fed.errors import ConcurrencyError, IllegalTransitionError
from hermes_fed.registry.promotion import PromotionConfig, RolledBack, Stage


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[AdapterRegistry]:
    with AdapterRegistry.open(tmp_path / "coordinator") as reg:
        yield reg


def _to_production(log: PromotionLog, version: str) -> None:
    for _ in range(4):
        log.promote(version, reason="test", shipped=[version])


def _facts(registry: AdapterRegistry) -> list[tuple[str, str, str]]:
    return [(e.type, e.data["version"], e.data.get("stage") or str(e.data.get("to_version")))
            for e in registry.store.read_stream(PROMOTION_STREAM)]


@pytest.mark.parametrize(("config", "canary", "ab"), [
    (PromotionConfig(), 0.01, 0.09),
    (PromotionConfig(canary_fraction=0.05, ab_fraction=0.2), 0.05, 0.2),
])
def test_stages_are_events_with_configured_fractions(
        registry: AdapterRegistry, config: PromotionConfig, canary: float, ab: float) -> None:
    log = PromotionLog(registry.store, config)
    # Execute
    for _ in range(3):
        log.promote("v2", reason="next")
    # Assert
    assert [(h.data["stage"], h.data["traffic_fraction"]) for h in log.history("v2")] == [
        ("candidate", 0.0), ("canary", canary), ("ab", ab)]
    assert log.state().traffic() == pytest.approx({"v2": ab, None: 1.0 - ab})


def test_pr2_production_needs_a_ship_conclusion_or_force(registry: AdapterRegistry) -> None:
    log = PromotionLog(registry.store)
    for _ in range(3):
        log.promote("v2")
    before = _facts(registry)
    # Execute / Assert: refused, nothing appended
    with pytest.raises(IllegalTransitionError, match="SHIP"):
        log.promote("v2", shipped=["v9"])
    assert _facts(registry) == before
    fact = log.promote("v2", reason="on call", force=True)
    assert fact.stage is Stage.PRODUCTION  # type: ignore[union-attr]
    assert "forced without a SHIP" in fact.reason


def test_pr1_illegal_rollback_appends_nothing(registry: AdapterRegistry) -> None:
    log = PromotionLog(registry.store)
    with pytest.raises(IllegalTransitionError):
        log.rollback("v-unknown", "why")
    with pytest.raises(IllegalTransitionError, match="needs a reason"):
        log.rollback("v-unknown", "")
    assert _facts(registry) == []


def test_pr1_a_change_between_check_and_append_fails(registry: AdapterRegistry) -> None:
    # Prepare: two coordinators validated against the same stream version
    log = PromotionLog(registry.store)
    log.promote("v2")
    seen = len(registry.store.read_stream(PROMOTION_STREAM))
    log.promote("v2")  # the other coordinator moves v2 to canary first
    from hermes_fed.registry.promotion import Promoted

    # Execute / Assert
    with pytest.raises(ConcurrencyError):
        log._append(Promoted("v2", Stage.CANARY, 0.01, "late"), seen, "test")
    assert len(registry.store.read_stream(PROMOTION_STREAM)) == 2


@pytest.mark.parametrize(("stage_steps", "verdict", "rolled"), [
    (3, "ROLLBACK", True),   # in ab: withdrawn
    (1, "ROLLBACK", True),   # a candidate: withdrawn
    (3, "SHIP", False),
    (0, "ROLLBACK", False),  # never registered: nothing to roll back
])
def test_a_rollback_conclusion_withdraws_a_live_treatment(
        registry: AdapterRegistry, stage_steps: int, verdict: str, rolled: bool) -> None:
    log = PromotionLog(registry.store)
    _to_production(log, "v1")
    for _ in range(stage_steps):
        log.promote("v2")
    # Execute
    fact = log.on_conclusion("ab-1", "v2", verdict, ["guardrail: tenant 3 harmed"])
    # Assert
    assert (fact is not None) is rolled
    if rolled:
        assert isinstance(fact, RolledBack) and fact.to_version == "v1"
        assert "ab-1 concluded ROLLBACK: guardrail: tenant 3 harmed" in fact.reason
        assert log.state().get("v2").stage is Stage.ROLLED_BACK  # type: ignore[union-attr]
        assert log.state().production == "v1"


def test_feedback_guard_rolls_back_a_declining_production_version(registry: AdapterRegistry) -> None:
    # Prepare: v1 then v2 in production; v2's quality falls look after look
    log = PromotionLog(registry.store)
    _to_production(log, "v1")
    _to_production(log, "v2")
    guard = QualityGuardConfig(window=5, max_decline_per_round=0.01, last_k=2, max_drop=0.05)
    outcomes = []
    for mean in (0.80, 0.78, 0.75, 0.71, 0.66):
        log.record_quality("v2", {"n": 500, "mean": mean})
        # Execute
        outcomes.append(log.check_feedback_loop(guard))
    # Assert: it fires once the trend breaches, with the reason recorded, and v1 is back
    fired = [fact for _, fact in outcomes if fact is not None]
    assert len(fired) == 1 and isinstance(fired[0], RolledBack)
    assert fired[0].version == "v2" and fired[0].to_version == "v1"
    assert fired[0].reason.startswith("negative-feedback-loop guard:")
    assert log.state().production == "v1"
    assert log.history("v2")[-1].data["reason"] == fired[0].reason


def test_feedback_guard_leaves_a_flat_version_alone(registry: AdapterRegistry) -> None:
    log = PromotionLog(registry.store)
    _to_production(log, "v1")
    _to_production(log, "v2")
    for mean in (0.80, 0.81, 0.79, 0.80, 0.805, 0.80):
        log.record_quality("v2", {"n": 500, "mean": mean})
    trend, fact = log.check_feedback_loop()
    assert trend is not None and not trend.breached and fact is None
    assert log.state().production == "v2"


def test_quality_before_the_latest_promotion_is_not_counted(registry: AdapterRegistry) -> None:
    log = PromotionLog(registry.store)
    for mean in (0.9, 0.5, 0.3):  # as an earlier candidate's traffic, say
        log.record_quality("v1", {"n": 100, "mean": mean})
    _to_production(log, "v1")
    trend, fact = log.check_feedback_loop()
    assert trend is None and fact is None
