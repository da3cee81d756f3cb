"""Sample-ratio mismatch chi-square, per tenant and overall."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from hermes_fed.abtest import ArmStats, TenantArms, check_srm, srm_bayes_factor, srm_test


@pytest.mark.parametrize(
    ("n_c", "n_t", "share"),
    [(500, 500, 0.5), (5200, 4800, 0.5), (9000, 1000, 0.1), (9200, 800, 0.1), (3, 9, 0.5)],
)
def test_srm_matches_scipy_chisquare(n_c: int, n_t: int, share: float) -> None:
    r = srm_test(n_c, n_t, share)
    total = n_c + n_t
    ref = stats.chisquare([n_c, n_t], [total * (1 - share), total * share])
    assert r.chi2 == pytest.approx(ref.statistic, rel=1e-12, abs=1e-12)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert r.observed_treatment_share == pytest.approx(n_t / total)


def _arms(tenant: str, n_c: int, n_t: int) -> TenantArms:
    return TenantArms(tenant, ArmStats(n_c, 0.5 * n_c, 0.3 * n_c),
                      ArmStats(n_t, 0.5 * n_t, 0.3 * n_t))  # fmt: skip


def test_one_broken_tenant_is_caught_even_when_the_total_looks_fine() -> None:
    # Prepare: t2 over-assigns treatment, t3 under-assigns by the same amount
    tenants = [_arms("t1", 1000, 1000), _arms("t2", 800, 1200), _arms("t3", 1200, 800)]
    # Execute
    report = check_srm(tenants, 0.5)
    # Assert
    assert report.overall.p_value == pytest.approx(1.0)
    assert not report.overall_mismatch
    assert report.mismatched_tenants == ("t2", "t3")
    assert not report.clean
    assert report.per_tenant_alpha == pytest.approx(0.001 / 3)


@pytest.mark.parametrize("sequential", [True, False])
def test_overall_mismatch_from_many_small_drifts(sequential: bool) -> None:
    tenants = [_arms(f"t{i}", 1060, 940) for i in range(10)]
    report = check_srm(tenants, 0.5, sequential=sequential)
    assert report.mismatched_tenants == ()
    assert report.overall_mismatch and not report.clean


@pytest.mark.parametrize(("n_c", "n_t", "share"), [(60, 40, 0.5), (900, 100, 0.1), (5, 0, 0.3)])
def test_bayes_factor_equals_the_integrated_beta_binomial(n_c: int, n_t: int, share: float) -> None:
    # Prepare: BF = ∫ q^n_t (1-q)^n_c Beta(q; 100p, 100(1-p)) dq / (p^n_t (1-p)^n_c)
    prior = stats.beta(100 * share, 100 * (1 - share))

    def ratio(q: float) -> float:  # the likelihood ratio, to keep the integrand O(1)
        log_r = n_t * math.log(q / share) + n_c * math.log((1 - q) / (1 - share))
        return math.exp(log_r) * float(prior.pdf(q))

    integral, _ = integrate.quad(ratio, 1e-12, 1 - 1e-12, points=[n_t / (n_c + n_t)],
                                 limit=200, epsabs=0.0, epsrel=1e-10)  # fmt: skip
    expected = math.log(integral)
    # Execute / Assert
    assert srm_bayes_factor(n_c, n_t, share) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_anytime_valid_srm_keeps_its_level_when_checked_every_round_unlike_chi_square() -> None:
    # Prepare: a correct 50/50 split, 150 units a round, 20 looks, checked at alpha = 0.05
    # (large so the Monte Carlo error is small) in 1000 seeded runs.
    rng = np.random.default_rng(2024)
    sims, rounds, alpha = 1000, 20, 0.05
    n_t = rng.binomial(150, 0.5, size=(sims, rounds)).cumsum(axis=1)
    n_c = 150 * np.arange(1, rounds + 1) - n_t
    # Execute
    seq_alarm = chi_alarm = 0
    for s in range(sims):
        looks = [srm_test(int(c), int(t), 0.5) for c, t in zip(n_c[s], n_t[s], strict=True)]
        seq_alarm += any(r.p_sequential < alpha for r in looks)
        chi_alarm += any(r.p_value < alpha for r in looks)
    # Assert: ±2 Monte Carlo sd of a 5% rate over 1000 runs is ±0.014
    seq_rate, chi_rate = seq_alarm / sims, chi_alarm / sims
    assert seq_rate <= alpha + 2 * math.sqrt(alpha * (1 - alpha) / sims)
    assert chi_rate > alpha + 3 * math.sqrt(alpha * (1 - alpha) / sims)


def test_anytime_valid_srm_detects_a_real_mismatch() -> None:
    assert srm_test(5500, 4500, 0.5).p_sequential < 1e-6


def test_healthy_split_is_clean() -> None:
    report = check_srm([_arms("a", 9010, 990), _arms("b", 450, 50)], 0.1)
    assert report.clean


@pytest.mark.parametrize("share", [0.0, 1.0, -0.1, float("nan")])
def test_bad_share_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="treatment_share"):
        srm_test(10, 10, share)


def test_empty_arms_have_no_mismatch() -> None:
    assert srm_test(0, 0, 0.5).p_value == 1.0
