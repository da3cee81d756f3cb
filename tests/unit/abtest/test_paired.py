"""Offline paired evaluation from per-node difference statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from hermes_fed.abtest import ArmStats, Verdict, decide_offline, paired_test


def held_out(seed: int, n: int, base: float, lift: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-example scores of the current and the candidate adapter on the same examples."""
    rng = np.random.default_rng(seed)
    difficulty = rng.beta(4, 2, n) * base / (4 / 6)  # shared per-example variation
    current = difficulty + rng.normal(0, 0.05, n)
    candidate = difficulty * (1 + lift) + rng.normal(0, 0.05, n)
    return current, candidate


def report(current: np.ndarray, candidate: np.ndarray) -> ArmStats:
    """What a node sends: sums of d = candidate - current, with current as the covariate."""
    return ArmStats.from_values(candidate - current, current)


@pytest.mark.parametrize(("n", "lift"), [(30, 0.05), (200, -0.03), (1000, 0.0)])
def test_paired_test_matches_scipy_ttest_rel(n: int, lift: float) -> None:
    current, candidate = held_out(n, n, 0.6, lift)
    r = paired_test("t", report(current, candidate))
    ref = stats.ttest_rel(candidate, current)
    assert r.t == pytest.approx(ref.statistic, rel=1e-9)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-7)
    assert r.p_harm == pytest.approx(stats.ttest_rel(candidate, current, alternative="less").pvalue, rel=1e-7)
    ci = ref.confidence_interval(0.95)
    assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-7)
    assert (r.control_mean, r.treatment_mean) == pytest.approx((current.mean(), candidate.mean()))


def test_relative_lift_se_is_the_delta_method_with_the_pair_covariance() -> None:
    # Prepare: independent computation from raw data, gradient of d/x at the means
    current, candidate = held_out(3, 500, 0.6, 0.05)
    d = candidate - current
    cov = np.cov(np.vstack([d, current])) / len(d)
    grad = np.array([1 / current.mean(), -d.mean() / current.mean() ** 2])
    # Execute
    r = paired_test("t", report(current, candidate))
    # Assert
    assert r.lift_kind == "relative"
    assert r.lift == pytest.approx(d.mean() / current.mean(), rel=1e-10)
    assert r.lift_se == pytest.approx(float(np.sqrt(grad @ cov @ grad)), rel=1e-8)


def test_without_the_covariate_the_lift_is_absolute() -> None:
    current, candidate = held_out(4, 100, 0.6, 0.05)
    r = paired_test("t", ArmStats.from_values(candidate - current))
    assert r.lift_kind == "absolute" and r.lift == r.diff


def test_pairing_is_more_sensitive_than_treating_the_arms_as_independent() -> None:
    current, candidate = held_out(5, 300, 0.6, 0.03)
    paired = paired_test("t", report(current, candidate))
    independent = stats.ttest_ind(candidate, current, equal_var=False)
    assert paired.p_value < independent.pvalue


def test_offline_decision_ships_a_real_gain_and_records_json() -> None:
    results = [paired_test(f"t{i}", report(*held_out(10 + i, 400, base, 0.05)))
               for i, base in enumerate([0.5, 0.6, 0.7])]  # fmt: skip
    decision = decide_offline(results)
    assert decision.verdict is Verdict.SHIP
    assert decision.numbers["mode"] == "offline"
    json.dumps(decision.numbers, allow_nan=False)


def test_offline_decision_blocks_a_tenant_made_worse() -> None:
    results = [paired_test(f"t{i}", report(*held_out(20 + i, 400, 0.6, 0.05))) for i in range(3)]
    results.append(paired_test("worse", report(*held_out(30, 400, 0.6, -0.08))))
    decision = decide_offline(results)
    assert decision.verdict is Verdict.ROLLBACK
    assert decision.reasons[0].startswith("guardrail: tenant(s) worse")


@pytest.mark.parametrize(
    ("n", "lift", "verdict"), [(20, 0.05, Verdict.CONTINUE), (400, 0.0, Verdict.ROLLBACK)]
)
def test_offline_decision_small_or_null(n: int, lift: float, verdict: Verdict) -> None:
    results = [paired_test(f"t{i}", report(*held_out(40 + i, n, 0.6, lift))) for i in range(3)]
    assert decide_offline(results).verdict is verdict


def test_offline_decision_leaves_out_a_tenant_below_the_floor_without_blocking() -> None:
    # Arrange: three tenants with a real gain and 400 examples, one with 12
    results = [paired_test(f"t{i}", report(*held_out(50 + i, 400, 0.6, 0.05))) for i in range(3)]
    results.append(paired_test("tiny", report(*held_out(60, 12, 0.6, 0.05))))
    # Execute
    decision = decide_offline(results)
    # Assert
    assert decision.verdict is Verdict.SHIP
    assert decision.reasons[0].startswith("fewer than 30 held-out examples in tiny")
    assert decision.numbers["tenants_below_min_samples"] == ["tiny"]
    assert [t["tenant_id"] for t in decision.numbers["tenants"]] == ["t0", "t1", "t2"]
