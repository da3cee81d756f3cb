"""A/B tests in the coordinator's log (SQLite): looks, conclusions, carried sequential state."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from coordinator.logs.abtest import ABTestLog, arm_from_dict, arm_to_dict
from coordinator.logs.registry import AdapterRegistry
from hermes_fed.abtest import ArmStats, TenantArms, Verdict
from hermes_fed.errors import ABTestError, ConfigError


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[AdapterRegistry]:
    with AdapterRegistry.open(tmp_path / "coordinator") as reg:
        yield reg


def _tenants(effects: list[float], n: int = 400, seed: int = 0, covariate: bool = False,
             ) -> list[TenantArms]:
    rng = random.Random(seed)
    out = []
    for i, effect in enumerate(effects):
        arms = []
        for shift in (0.0, effect):
            x = [rng.gauss(0.6, 0.15) for _ in range(n)]
            y = [xi * (1.0 + shift) + rng.gauss(0.0, 0.05) for xi in x]
            arms.append(ArmStats.from_values(y, x if covariate else None))
        out.append(TenantArms(f"t{i}", arms[0], arms[1]))
    return out


def _types(registry: AdapterRegistry, test_id: str) -> list[str]:
    return [e.type for e in registry.store.read_stream(f"abtest-{test_id}")]


def test_create_records_the_brief_defaults(registry: AdapterRegistry) -> None:
    # Execute
    spec = ABTestLog(registry.store).create("v1", "v2", ab_test_id="ab-x")
    # Assert
    assert (spec.traffic_split, spec.min_samples, spec.duration_days) == (0.1, 1000, 14)
    cfg = spec.decision_config()
    assert cfg.treatment_share == 0.1 and cfg.min_total_per_arm == 1000
    assert cfg.max_duration_days == 14.0 and cfg.min_duration_days == 7.0
    assert _types(registry, "ab-x") == ["ABTestCreated"]


@pytest.mark.parametrize(("kwargs", "bad"), [
    ({"control": "v1", "treatment": "v1"}, "'v1'"),
    ({"control": "v1", "treatment": "v2", "traffic_split": 1.0}, "1.0"),
    ({"control": "v1", "treatment": "v2", "min_samples": -1}, "-1"),
    ({"control": "v1", "treatment": "v2", "duration_days": 0}, "0"),
    ({"control": "v1", "treatment": "v2", "ab_test_id": "a b"}, "'a b'"),
])
def test_bad_create_names_the_value_and_appends_nothing(
        registry: AdapterRegistry, kwargs: dict[str, object], bad: str) -> None:
    with pytest.raises(ConfigError, match=bad):
        ABTestLog(registry.store).create(**kwargs)  # type: ignore[arg-type]
    assert list(registry.store.read()) == []


def test_an_id_is_created_once(registry: AdapterRegistry) -> None:
    log = ABTestLog(registry.store)
    log.create("v1", "v2", ab_test_id="ab-1")
    with pytest.raises(ABTestError, match="already exists"):
        log.create("v1", "v3", ab_test_id="ab-1")
    assert _types(registry, "ab-1") == ["ABTestCreated"]


def test_abc1_continue_look_records_stats_only(registry: AdapterRegistry) -> None:
    # Prepare: a true +5% effect, but before the minimum duration
    log = ABTestLog(registry.store)
    spec = log.create("v1", "v2", traffic_split=0.5, min_samples=100, ab_test_id="ab-1")
    # Execute
    out = log.record_online_look("ab-1", _tenants([0.05] * 3),
                                 now=spec.created_at + timedelta(days=1))
    # Assert
    assert out.verdict is Verdict.CONTINUE and not out.concluded and out.look == 1
    assert _types(registry, "ab-1") == ["ABTestCreated", "ABTestStatsReported"]
    look = log.get("ab-1").looks[0]
    assert look["round"] == 1 and look["stats"]["mode"] == "online"
    assert arm_from_dict(look["stats"]["tenants"]["t0"]["treatment"]) == _tenants([0.05] * 3)[0].treatment
    assert "minimum duration" in " ".join(look["stats"]["reasons"])


def test_abc1_ship_after_minimum_duration_concludes_in_the_same_append(
        registry: AdapterRegistry) -> None:
    log = ABTestLog(registry.store)
    spec = log.create("v1", "v2", traffic_split=0.5, min_samples=100, ab_test_id="ab-1")
    # Execute
    out = log.record_online_look("ab-1", _tenants([0.05] * 3, covariate=True),
                                 now=spec.created_at + timedelta(days=8))
    # Assert
    assert out.verdict is Verdict.SHIP and out.concluded
    events = registry.store.read_stream("abtest-ab-1")
    assert [e.type for e in events] == ["ABTestCreated", "ABTestStatsReported", "ABTestConcluded"]
    assert events[1].position + 1 == events[2].position
    concluded = events[2].data
    assert concluded["decision"] == "SHIP" and concluded["numbers"]["look"] == 1
    assert concluded["numbers"]["meta"]["k"] == 3
    assert all("cuped_theta" in t for t in concluded["numbers"]["tenants"])
    assert log.shipped_versions() == ["v2"]


def test_abc1_harmed_tenant_rolls_back_at_once(registry: AdapterRegistry) -> None:
    log = ABTestLog(registry.store)
    log.create("v1", "v2", traffic_split=0.5, min_samples=100, ab_test_id="ab-1")
    # Execute: day 0, two tenants gain, one is clearly harmed
    out = log.record_online_look("ab-1", _tenants([0.05, 0.05, -0.2]))
    # Assert
    assert out.verdict is Verdict.ROLLBACK and out.concluded
    assert "t2" in out.reasons[0] and "guardrail" in out.reasons[0]


def test_abc2_concluded_test_takes_no_look_and_no_second_conclusion(
        registry: AdapterRegistry) -> None:
    log = ABTestLog(registry.store)
    log.create("v1", "v2", traffic_split=0.5, min_samples=100, ab_test_id="ab-1")
    log.record_online_look("ab-1", _tenants([0.05, 0.05, -0.2]))
    before = _types(registry, "ab-1")
    with pytest.raises(ABTestError, match="already concluded"):
        log.record_online_look("ab-1", _tenants([0.05] * 3))
    with pytest.raises(ABTestError, match="already concluded"):
        log.conclude("ab-1", verdict=Verdict.SHIP, reason="no")
    assert _types(registry, "ab-1") == before


def test_abc3_sequential_state_is_carried_by_the_log_across_reopen(tmp_path: Path) -> None:
    # Prepare: three looks with no effect, each by a freshly opened coordinator
    root = tmp_path / "coordinator"
    with AdapterRegistry.open(root) as reg:
        spec = ABTestLog(reg.store).create("v1", "v2", traffic_split=0.5, min_samples=100,
                                           ab_test_id="ab-1")
    p_values = []
    for look in range(1, 4):
        with AdapterRegistry.open(root) as reg:
            log = ABTestLog(reg.store)
            # Execute
            log.record_online_look("ab-1", _tenants([0.0] * 2, n=200 * look, seed=look),
                                   now=spec.created_at + timedelta(days=1))
            state = log.get("ab-1").last_online_state()
        # Assert: one more look each time, and the always-valid p never rises
        assert state.looks == look
        p_values.append(state.p_value)
    assert p_values == sorted(p_values, reverse=True)


def test_look_without_any_reporting_tenant_records_continue(registry: AdapterRegistry) -> None:
    log = ABTestLog(registry.store)
    log.create("v1", "v2", ab_test_id="ab-1")
    out = log.record_online_look("ab-1", [], suppressed=["7: suppressed (fewer than k_min)"])
    assert out.verdict is Verdict.CONTINUE and out.decision is None
    stats = log.get("ab-1").looks[0]["stats"]
    assert stats["suppressed_tenants"] == ["7: suppressed (fewer than k_min)"]


@pytest.mark.parametrize(("shift", "verdict", "concludes"), [
    (0.05, Verdict.SHIP, False),
    (-0.05, Verdict.ROLLBACK, True),
])
def test_offline_look_ship_passes_the_gate_rollback_concludes(
        registry: AdapterRegistry, shift: float, verdict: Verdict, concludes: bool) -> None:
    # Prepare: paired differences d with the current score as covariate x
    rng = random.Random(1)
    paired = {}
    for t in ("a", "b", "c"):
        x = [rng.gauss(1.0, 0.2) for _ in range(200)]
        d = [xi * shift + rng.gauss(0.0, 0.02) for xi in x]
        paired[t] = ArmStats.from_values(d, x)
    log = ABTestLog(registry.store)
    log.create("v1", "v2", ab_test_id="ab-1")
    # Execute
    out = log.record_offline_look("ab-1", paired)
    # Assert
    assert out.verdict is verdict and out.concluded is concludes
    status = log.get("ab-1")
    assert status.has_offline_look() and status.is_open is not concludes
    assert status.looks[0]["stats"]["numbers"]["mode"] == "offline"


def test_operator_conclusion_rules(registry: AdapterRegistry) -> None:
    log = ABTestLog(registry.store)
    spec = log.create("v1", "v2", traffic_split=0.5, min_samples=100, ab_test_id="ab-1")
    log.record_online_look("ab-1", _tenants([0.05] * 3), now=spec.created_at + timedelta(days=1))
    # A CONTINUE look cannot be concluded without a verdict, nor overridden without a reason
    with pytest.raises(ABTestError, match="CONTINUE"):
        log.conclude("ab-1")
    with pytest.raises(ABTestError, match="needs a reason"):
        log.conclude("ab-1", verdict=Verdict.ROLLBACK)
    assert _types(registry, "ab-1")[-1] == "ABTestStatsReported"
    # Execute
    body = log.conclude("ab-1", verdict=Verdict.ROLLBACK, reason="budget cut")
    # Assert
    assert body["decision"] == "ROLLBACK"
    assert body["numbers"]["concluded_by"] == "operator"
    assert body["numbers"]["looked_verdict"] == "CONTINUE"
    assert body["numbers"]["reasons"][-1] == "operator: budget cut"


def test_arm_dict_round_trip() -> None:
    for arm in (ArmStats(), ArmStats(3, 1.5, 1.0), ArmStats.from_values([1, 2, 3], [0, 1, 1])):
        assert arm_from_dict(arm_to_dict(arm)) == arm


def test_unknown_test_is_an_error(registry: AdapterRegistry) -> None:
    with pytest.raises(ABTestError, match="no A/B test 'ab-nope'"):
        ABTestLog(registry.store).get("ab-nope")
