"""ArmStats / TenantArms: mergeable sufficient statistics (invariants AB1, AB2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_fed.abtest import ArmStats, TenantArms
from hermes_fed.errors import HermesFedError, InsufficientDataError

values = st.lists(
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(values, values, values)
def test_ab1_addition_is_associative_commutative_with_identity(
    a: list[float], b: list[float], c: list[float]
) -> None:
    # Prepare
    x, y, z = ArmStats.from_values(a), ArmStats.from_values(b), ArmStats.from_values(c)
    # Execute
    left, right = (x + y) + z, x + (y + z)
    # Assert
    assert left.n == right.n == len(a) + len(b) + len(c)
    assert math.isclose(left.sum, right.sum, rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(left.sumsq, right.sumsq, rel_tol=1e-9, abs_tol=1e-6)
    assert (x + y).n == (y + x).n and math.isclose((x + y).sum, (y + x).sum, abs_tol=1e-9)
    assert x + ArmStats() == x and ArmStats() + x == x


@settings(max_examples=60, deadline=None)
@given(values, values)
def test_ab1_moments_of_a_sum_equal_those_of_concatenated_samples(a: list[float], b: list[float]) -> None:
    # Prepare
    merged = ArmStats.from_values(a) + ArmStats.from_values(b)
    data = np.array(a + b, dtype=np.float64)
    # Execute / Assert
    if len(data) >= 1:
        assert merged.mean == pytest.approx(float(data.mean()), abs=1e-9)
    if len(data) >= 2:
        assert merged.variance == pytest.approx(float(data.var(ddof=1)), rel=1e-6, abs=1e-6)


def test_ab1_covariate_sums_add_like_the_concatenated_sample() -> None:
    # Prepare
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=40), rng.normal(size=40)
    # Execute
    merged = ArmStats.from_values(y[:15], x[:15]) + ArmStats.from_values(y[15:], x[15:])
    # Assert
    whole = ArmStats.from_values(y, x)
    for name in ("n", "sum", "sumsq", "sum_x", "sum_x2", "sum_xy"):
        assert getattr(merged, name) == pytest.approx(getattr(whole, name), abs=1e-12)


def test_ab2_mixing_covariate_and_plain_arms_raises() -> None:
    with_x = ArmStats.from_values([1.0, 2.0], [0.5, 0.7])
    plain = ArmStats.from_values([3.0])
    with pytest.raises(ValueError, match="covariate"):
        _ = with_x + plain
    assert with_x + ArmStats() == with_x  # the empty arm stays the identity


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n": -1}, "n"),
        ({"n": 2, "sum": math.nan, "sumsq": 1.0}, "sum"),
        ({"n": 2, "sum": 1.0, "sumsq": -1.0}, "sumsq"),
        ({"n": 2, "sum": 1.0, "sumsq": 1.0, "sum_x": 1.0}, "covariate"),
        ({"n": 0, "sum": 1.0}, "n=0"),
        ({"n": 2, "sum": 1.0, "sumsq": math.inf}, "sumsq"),
    ],
)
def test_bad_arm_stats_are_refused_naming_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ArmStats(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("n", "prop"), [(0, "mean"), (0, "variance"), (1, "variance")])
def test_moments_need_enough_observations(n: int, prop: str) -> None:
    arm = ArmStats.from_values([0.5] * n)
    with pytest.raises(InsufficientDataError, match=f"n={n}") as info:
        getattr(arm, prop)
    assert isinstance(info.value, HermesFedError)


def test_constant_arm_has_zero_not_negative_variance() -> None:
    # Prepare: Σy² - (Σy)²/n is -9.9e-17 here in floating point
    arm = ArmStats.from_values([0.7] * 10)
    assert arm.sumsq - arm.sum**2 / arm.n < 0.0
    # Execute / Assert
    assert arm.variance == 0.0


def test_tenant_arms_add_per_tenant_only() -> None:
    a = TenantArms("t1", ArmStats.from_values([1.0]), ArmStats.from_values([2.0]))
    b = TenantArms("t1", ArmStats.from_values([3.0]), ArmStats.from_values([4.0, 5.0]))
    total = a + b
    assert (total.control.n, total.treatment.n, total.treatment.sum) == (2, 3, 11.0)
    with pytest.raises(ValueError, match="t2"):
        _ = a + TenantArms("t2", ArmStats(), ArmStats())
    with pytest.raises(ValueError, match="tenant_id"):
        TenantArms("", ArmStats(), ArmStats())
