"""CUPED from sufficient statistics, against raw-data recomputation and statsmodels ANCOVA."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from hermes_fed.abtest import ArmStats, TenantArms, cuped_adjust, welch_test


def _data(seed: int, n_c: int = 400, n_t: int = 350, effect: float = 0.03):
    rng = np.random.default_rng(seed)
    x_c, x_t = rng.beta(3, 2, n_c), rng.beta(3, 2, n_t) + 0.02  # a small pre-period imbalance
    y_c = 0.2 + 0.7 * x_c + rng.normal(0, 0.08, n_c)
    y_t = 0.2 + effect + 0.7 * x_t + rng.normal(0, 0.08, n_t)
    arms = TenantArms("t", ArmStats.from_values(y_c, x_c), ArmStats.from_values(y_t, x_t))
    return arms, (x_c, y_c, x_t, y_t)


def test_cuped_difference_equals_the_ancova_treatment_coefficient() -> None:
    # Prepare
    arms, (x_c, y_c, x_t, y_t) = _data(1)
    y = np.concatenate([y_c, y_t])
    design = np.column_stack([np.ones_like(y), np.r_[np.zeros(len(y_c)), np.ones(len(y_t))],
                              np.concatenate([x_c, x_t])])  # fmt: skip
    ols = sm.OLS(y, design).fit()
    # Execute
    result = cuped_adjust(arms)
    adjusted = welch_test(result.adjusted)
    # Assert
    assert result.theta == pytest.approx(ols.params[2], rel=1e-9)
    assert adjusted.diff == pytest.approx(ols.params[1], rel=1e-9)


def test_adjusted_arms_equal_the_adjusted_raw_metric() -> None:
    # Prepare
    arms, (x_c, y_c, x_t, y_t) = _data(2)
    # Execute
    result = cuped_adjust(arms)
    # Assert: recompute y' = y - θ(x - μ) from raw data
    mu = np.concatenate([x_c, x_t]).mean()
    assert result.covariate_mean == pytest.approx(mu)
    for arm, x, y in ((result.adjusted.control, x_c, y_c), (result.adjusted.treatment, x_t, y_t)):
        y_adj = y - result.theta * (x - mu)
        assert arm.n == len(y)
        assert arm.mean == pytest.approx(y_adj.mean(), rel=1e-10)
        assert arm.variance == pytest.approx(y_adj.var(ddof=1), rel=1e-8)


def test_cuped_shrinks_the_standard_error_by_about_sqrt_one_minus_rho_squared() -> None:
    arms, (x_c, y_c, _, _) = _data(3)
    raw = welch_test(arms)
    adjusted = welch_test(cuped_adjust(arms).adjusted)
    rho = np.corrcoef(x_c, y_c)[0, 1]
    assert adjusted.se < raw.se
    assert adjusted.se / raw.se == pytest.approx(np.sqrt(1 - rho**2), rel=0.05)


def test_constant_covariate_means_no_adjustment() -> None:
    y = np.linspace(0, 1, 50)
    arms = TenantArms("t", ArmStats.from_values(y, np.ones(50)),
                      ArmStats.from_values(y + 0.1, np.ones(50)))  # fmt: skip
    result = cuped_adjust(arms)
    assert result.theta == 0.0
    assert result.adjusted.treatment.mean == pytest.approx(arms.treatment.mean)


def test_missing_covariate_is_an_error() -> None:
    arms = TenantArms("t9", ArmStats.from_values([1.0, 2.0]), ArmStats.from_values([1.0, 2.0]))
    with pytest.raises(ValueError, match="t9"):
        cuped_adjust(arms)
