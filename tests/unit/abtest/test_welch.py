"""Welch's test and lift against scipy's reference implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hermes_fed.abtest import ArmStats, TenantArms, welch_test


def _arms(control: np.ndarray, treatment: np.ndarray) -> TenantArms:
    return TenantArms("t", ArmStats.from_values(control), ArmStats.from_values(treatment))


@pytest.mark.parametrize(
    ("n_c", "mean_c", "sd_c", "n_t", "mean_t", "sd_t"),
    [
        (30, 0.60, 0.20, 30, 0.63, 0.20),  # the brief's minimum per arm
        (900, 0.50, 0.10, 100, 0.55, 0.30),  # 90/10 split, unequal variances
        (45, 0.70, 0.05, 200, 0.65, 0.25),  # harm
        (1000, -0.20, 1.0, 1000, -0.10, 1.0),  # negative control mean
    ],
)
def test_welch_matches_scipy_ttest_ind_from_stats(
    n_c: int, mean_c: float, sd_c: float, n_t: int, mean_t: float, sd_t: float
) -> None:
    # Prepare
    rng = np.random.default_rng(n_c + n_t)
    c, t = rng.normal(mean_c, sd_c, n_c), rng.normal(mean_t, sd_t, n_t)
    # Execute
    result = welch_test(_arms(c, t))
    # Assert
    ref = stats.ttest_ind_from_stats(
        t.mean(), t.std(ddof=1), n_t, c.mean(), c.std(ddof=1), n_c, equal_var=False
    )
    assert result.t == pytest.approx(ref.statistic, rel=1e-9)
    assert result.p_value == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-300)
    raw = stats.ttest_ind(t, c, equal_var=False)
    assert result.p_value == pytest.approx(raw.pvalue, rel=1e-7, abs=1e-300)
    ci = raw.confidence_interval(0.95)
    assert (result.ci_low, result.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-7)
    one_sided = stats.ttest_ind(t, c, equal_var=False, alternative="less")
    assert result.p_harm == pytest.approx(one_sided.pvalue, rel=1e-7, abs=1e-300)


def test_relative_lift_uses_the_delta_method_when_control_mean_is_positive() -> None:
    # Prepare: by-hand figures; Var(mean_t)=0.04/400, Var(mean_c)=0.09/900
    c = ArmStats(900, 900 * 0.5, 899 * 0.09 + 900 * 0.25)
    t = ArmStats(400, 400 * 0.55, 399 * 0.04 + 400 * 0.55**2)
    # Execute
    r = welch_test(TenantArms("t", c, t))
    # Assert
    assert r.lift_kind == "relative"
    assert r.lift == pytest.approx(0.1)
    expected_se = math.sqrt(0.04 / 400 / 0.25 + 0.55**2 * (0.09 / 900) / 0.5**4)
    assert r.lift_se == pytest.approx(expected_se, rel=1e-9)
    assert r.lift_ci_low < r.lift < r.lift_ci_high


@pytest.mark.parametrize("control_mean", [0.0, -0.3])
def test_absolute_difference_when_control_mean_is_not_positive(control_mean: float) -> None:
    rng = np.random.default_rng(5)
    arms = _arms(rng.normal(control_mean, 0.1, 50), rng.normal(control_mean + 0.05, 0.1, 50))
    r = welch_test(arms)
    assert r.lift_kind == "absolute"
    assert (r.lift, r.lift_se) == (r.diff, r.se)
    assert (r.lift_ci_low, r.lift_ci_high) == (r.ci_low, r.ci_high)


def test_constant_arms_give_an_exact_verdict_not_nan() -> None:
    r = welch_test(_arms(np.full(40, 0.5), np.full(40, 0.7)))
    assert (r.se, r.t, r.p_value, r.p_harm) == (0.0, math.inf, 0.0, 1.0)
    same = welch_test(_arms(np.full(40, 0.5), np.full(40, 0.5)))
    assert (same.t, same.p_value) == (0.0, 1.0)
