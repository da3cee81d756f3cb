"""The normal-mixture mSPRT: its likelihood ratio, p-value and confidence sequence."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from hermes_fed.abtest import SequentialState, msprt_log_likelihood_ratio, msprt_update


@pytest.mark.parametrize(
    ("estimate", "variance", "tau"),
    [(0.0, 0.01, 0.05), (0.03, 0.0004, 0.05), (-0.1, 0.002, 0.1), (0.5, 0.04, 0.2)],
)
def test_log_lr_equals_the_numerically_integrated_mixture(
    estimate: float, variance: float, tau: float
) -> None:
    # Prepare: Λ = ∫ φ(θ̂; θ, V) φ(θ; 0, τ²) dθ / φ(θ̂; 0, V)
    sd = math.sqrt(variance)
    numerator, _ = integrate.quad(
        lambda th: stats.norm.pdf(estimate, th, sd) * stats.norm.pdf(th, 0, tau),
        -10 * tau,
        10 * tau,
        points=[estimate],
        limit=200,
    )
    expected = math.log(numerator / stats.norm.pdf(estimate, 0, sd))
    # Execute / Assert
    assert msprt_log_likelihood_ratio(estimate, variance, tau) == pytest.approx(expected, rel=1e-6, abs=1e-8)


def test_confidence_sequence_bounds_are_where_lambda_hits_one_over_alpha() -> None:
    state = msprt_update(SequentialState(), 0.04, 0.0003, tau=0.05, alpha=0.05)
    for bound in (state.ci_low, state.ci_high):
        log_lr = msprt_log_likelihood_ratio(0.04, 0.0003, 0.05, null=bound)
        assert log_lr == pytest.approx(math.log(20.0), rel=1e-9)
    assert state.ci_low < 0.04 < state.ci_high


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-0.2, 0.2), st.floats(1e-5, 1e-2)), min_size=1, max_size=10))
def test_p_value_never_rises_and_the_interval_never_widens(looks: list[tuple[float, float]]) -> None:
    state = SequentialState()
    for estimate, variance in looks:
        new = msprt_update(state, estimate, variance, tau=0.05, alpha=0.05)
        assert new.p_value <= state.p_value
        assert new.ci_low >= state.ci_low and new.ci_high <= state.ci_high
        assert new.looks == state.looks + 1
        state = new


def test_a_change_of_scale_restarts_the_test() -> None:
    state = msprt_update(SequentialState(), 0.2, 0.0001, tau=0.05, alpha=0.05)
    assert state.p_value < 1e-6
    restarted = msprt_update(state, 0.0, 0.01, tau=0.05, alpha=0.05, scale="absolute")
    assert (restarted.looks, restarted.p_value, restarted.scale) == (1, 1.0, "absolute")


@pytest.mark.parametrize(
    ("estimate", "variance", "tau", "field"),
    [(0.1, 0.0, 0.05, "variance"), (0.1, 0.01, 0.0, "tau"), (math.nan, 0.01, 0.05, "estimate")],
)
def test_bad_inputs_are_refused(estimate: float, variance: float, tau: float, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        msprt_log_likelihood_ratio(estimate, variance, tau)


def test_state_json_has_no_infinities() -> None:
    figures = SequentialState().to_json()
    assert figures["ci_low"] is None and figures["ci_high"] is None and figures["p_value"] == 1.0
