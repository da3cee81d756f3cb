"""Sample-ratio mismatch chi-square, per tenant and overall."""

from __future__ import annotations

import pytest
from scipy import stats

from hermes_fed.abtest import ArmStats, TenantArms, check_srm, srm_test


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


def test_overall_mismatch_from_many_small_drifts() -> None:
    tenants = [_arms(f"t{i}", 1030, 970) for i in range(10)]
    report = check_srm(tenants, 0.5)
    assert report.mismatched_tenants == ()
    assert report.overall_mismatch and not report.clean


def test_healthy_split_is_clean() -> None:
    report = check_srm([_arms("a", 9010, 990), _arms("b", 450, 50)], 0.1)
    assert report.clean


@pytest.mark.parametrize("share", [0.0, 1.0, -0.1, float("nan")])
def test_bad_share_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="treatment_share"):
        srm_test(10, 10, share)


def test_empty_arms_have_no_mismatch() -> None:
    assert srm_test(0, 0, 0.5).p_value == 1.0
