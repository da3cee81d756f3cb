"""Differential privacy: clipping, noise, and the RDP accountant against independent references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.stats import norm

from hermes_fed.errors import PrivacyBudgetExhausted
from hermes_fed.privacy.dp import DPConfig, RdpAccountant, add_gaussian_noise, clip_update, global_norm


def exact_gaussian_epsilon(sigma: float, delta: float) -> float:
    """Analytical Gaussian mechanism (Balle & Wang 2018, Thm. 8), sensitivity 1: the exact epsilon."""

    def delta_of(eps: float) -> float:
        return norm.cdf(1 / (2 * sigma) - eps * sigma) - math.exp(eps) * norm.cdf(
            -1 / (2 * sigma) - eps * sigma
        )

    return float(brentq(lambda e: delta_of(e) - delta, 0.0, 500.0))


@pytest.mark.parametrize("sigma", [0.8, 1.0, 2.0, 5.0])
def test_accountant_upper_bounds_the_exact_gaussian_epsilon_and_is_tight(sigma: float) -> None:
    # Prepare
    accountant = RdpAccountant()
    # Execute
    accountant.step(noise_multiplier=sigma, sampling_rate=1.0)
    eps = accountant.epsilon(1e-5)
    exact = exact_gaussian_epsilon(sigma, 1e-5)
    # Assert: RDP conversion is a valid (never smaller) and reasonably tight bound
    assert eps >= exact * 0.999
    assert eps <= exact * 1.6


def test_composition_over_rounds_matches_a_single_gaussian_with_scaled_sigma() -> None:
    # T rounds of sigma compose (exactly, in RDP) like one round of sigma / sqrt(T).
    many, one = RdpAccountant(), RdpAccountant()
    many.step(4.0, 1.0, rounds=16)
    one.step(4.0 / 4.0, 1.0)
    assert many.epsilon(1e-5) == pytest.approx(one.epsilon(1e-5), rel=1e-9)


def test_subsampling_amplifies_privacy() -> None:
    full, sampled = RdpAccountant(), RdpAccountant()
    full.step(1.0, 1.0, rounds=10)
    sampled.step(1.0, 0.1, rounds=10)
    assert sampled.epsilon(1e-5) < 0.5 * full.epsilon(1e-5)


def test_sampled_rdp_tends_to_the_unsampled_formula_as_q_tends_to_one() -> None:
    orders = (2, 8, 32)
    near = RdpAccountant.round_rdp(1.5, 1.0 - 1e-12, orders)
    exact = [a / (2 * 1.5**2) for a in orders]
    assert near == pytest.approx(exact, rel=1e-6)


def test_budget_refuses_the_round_that_would_exceed_it_and_records_nothing() -> None:
    config = DPConfig(mode="server", clip_norm=1.0, noise_multiplier=2.0, delta=1e-5, epsilon_budget=6.0)
    accountant = RdpAccountant()
    spent = [accountant.charge(config)]
    while True:
        try:
            spent.append(accountant.charge(config))
        except PrivacyBudgetExhausted as exc:
            assert "budget 6.000" in str(exc)
            break
    assert all(a < b for a, b in itertools.pairwise(spent))
    assert spent[-1] <= 6.0
    assert accountant.rounds == len(spent)
    assert accountant.epsilon(1e-5) == pytest.approx(spent[-1])


@given(
    st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=30),
    st.floats(0.01, 50),
)
@settings(max_examples=60, deadline=None)
def test_clipped_norm_never_exceeds_the_bound(values: list[float], clip: float) -> None:
    tensors = {"a": np.array(values, dtype=np.float64), "b": np.array(values[::-1], dtype=np.float64) * 2}
    clipped, before = clip_update(tensors, clip)
    assert global_norm(clipped) <= clip * (1 + 1e-9)
    assert before == pytest.approx(global_norm(tensors))
    if before <= clip:
        np.testing.assert_array_equal(clipped["a"], tensors["a"])


def test_noise_has_the_requested_standard_deviation() -> None:
    rng = np.random.default_rng(0)
    noisy = add_gaussian_noise({"w": np.zeros(200_000, dtype=np.float32)}, 0.5, rng)["w"]
    assert noisy.std() == pytest.approx(0.5, rel=0.01)
    assert noisy.dtype == np.float32


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": "on"}, "dp.mode"),
        ({"clip_norm": 0.0}, "dp.clip_norm"),
        ({"mode": "server", "noise_multiplier": 0.0}, "dp.noise_multiplier"),
        ({"delta": 1.5}, "dp.delta"),
        ({"epsilon_budget": -1.0}, "dp.epsilon_budget"),
    ],
)
def test_config_names_the_bad_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        DPConfig(**kwargs)  # type: ignore[arg-type]
