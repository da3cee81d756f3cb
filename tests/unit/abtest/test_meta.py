"""Fixed-effect and DerSimonian–Laird meta-analysis against statsmodels' combine_effects."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.meta_analysis import combine_effects as sm_combine

from hermes_fed.abtest import TenantEffect, combine_effects


def _effects(y: list[float], v: list[float]) -> list[TenantEffect]:
    return [TenantEffect(f"t{i}", a, b) for i, (a, b) in enumerate(zip(y, v, strict=True))]


HETEROGENEOUS = [
    # (effects, variances): Q > k - 1, so tau² > 0 and statsmodels agrees field by field
    ([0.10, 0.30, -0.05, 0.20, 0.02], [0.004, 0.006, 0.003, 0.010, 0.002]),
    ([0.05, 0.08, 0.01, 0.12, 0.03], [0.0001, 0.0002, 0.0001, 0.0003, 0.0002]),
    ([1.0, -1.0], [0.1, 0.1]),
]


@pytest.mark.parametrize(("y", "v"), HETEROGENEOUS)
def test_matches_statsmodels_when_heterogeneous(y: list[float], v: list[float]) -> None:
    # Prepare
    ref = sm_combine(np.array(y), np.array(v), method_re="dl", use_t=False, alpha=0.05)
    assert ref.tau2 > 0
    # Execute
    r = combine_effects(_effects(y, v))
    # Assert
    assert r.fixed == pytest.approx(ref.mean_effect_fe, rel=1e-10)
    assert r.fixed_se == pytest.approx(ref.sd_eff_w_fe, rel=1e-10)
    assert r.random == pytest.approx(ref.mean_effect_re, rel=1e-10)
    assert r.random_se == pytest.approx(ref.sd_eff_w_re, rel=1e-10)
    assert r.tau2 == pytest.approx(ref.tau2, rel=1e-10)
    assert r.q == pytest.approx(ref.q, rel=1e-10)
    assert r.i2 == pytest.approx(ref.i2, rel=1e-10)
    ci_fe, ci_re = ref.conf_int()[0], ref.conf_int()[1]
    assert (r.random_ci_low, r.random_ci_high) == pytest.approx(tuple(ci_re), rel=1e-9)
    assert (r.fixed_ci_low, r.fixed_ci_high) == pytest.approx(tuple(ci_fe), rel=1e-9)
    assert sum(r.weights_random) == pytest.approx(1.0)


def test_homogeneous_effects_truncate_tau2_at_zero_where_statsmodels_does_not() -> None:
    # Prepare: Q < k - 1; statsmodels 0.15 reports a negative tau² and I²
    y, v = [0.1, 0.2, 0.05], [0.01, 0.02, 0.015]
    ref = sm_combine(np.array(y), np.array(v), method_re="dl", use_t=False)
    assert ref.tau2 < 0 and ref.i2 < 0
    # Execute
    r = combine_effects(_effects(y, v))
    # Assert: DerSimonian–Laird's max(0, .) -> random effects collapse onto fixed effect
    assert (r.tau2, r.i2) == (0.0, 0.0)
    assert r.q == pytest.approx(ref.q, rel=1e-10)
    assert r.fixed == pytest.approx(ref.mean_effect_fe, rel=1e-10)
    assert (r.random, r.random_se) == pytest.approx((r.fixed, r.fixed_se), rel=1e-12)


def test_single_tenant_is_its_own_estimate() -> None:
    r = combine_effects([TenantEffect("only", 0.04, 0.0004)])
    assert (r.k, r.fixed, r.random, r.tau2, r.q, r.i2) == (1, 0.04, 0.04, 0.0, 0.0, 0.0)
    assert r.fixed_se == pytest.approx(0.02)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-1, 1, allow_nan=False),
            st.floats(1e-4, 1.0, allow_nan=False),
        ),
        min_size=2,
        max_size=8,
    )
)
def test_random_effects_never_narrower_than_fixed(pairs: list[tuple[float, float]]) -> None:
    r = combine_effects([TenantEffect(f"t{i}", y, v) for i, (y, v) in enumerate(pairs)])
    assert r.random_se >= r.fixed_se * (1 - 1e-12)
    assert 0.0 <= r.i2 < 1.0 and r.tau2 >= 0.0
    lo, hi = min(y for y, _ in pairs), max(y for y, _ in pairs)
    assert lo - 1e-12 <= r.fixed <= hi + 1e-12 and lo - 1e-12 <= r.random <= hi + 1e-12


@pytest.mark.parametrize(("effect", "variance"), [(0.1, 0.0), (0.1, -1.0), (float("nan"), 1.0)])
def test_bad_effects_are_refused(effect: float, variance: float) -> None:
    with pytest.raises(ValueError, match="TenantEffect"):
        TenantEffect("t", effect, variance)


def test_no_effects_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        combine_effects([])
