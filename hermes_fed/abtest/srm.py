"""Sample-ratio mismatch (SRM): do the arm sizes match the configured split?

A chi-square goodness-of-fit test of the observed ``(n_control, n_treatment)`` against the
configured treatment share (Fabijan et al. 2019, "Diagnosing Sample Ratio Mismatch in
Online Controlled Experiments", KDD). An SRM means assignment or logging is broken and no
effect estimate from the test can be trusted. The usual threshold is ``p < 0.001``: SRM
checks run on every test and every look, and a false alarm throws the test away.

Tested per tenant (a node whose hashing or logging is broken) and overall (summed counts).
Per-tenant checks are Bonferroni-corrected across tenants in `check_srm` so that ``k``
healthy tenants raise a false alarm with probability <= ``alpha`` in total.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import special

from hermes_fed.abtest.arms import TenantArms

__all__ = ["SRMReport", "SRMResult", "check_srm", "srm_test"]


@dataclass(frozen=True, slots=True)
class SRMResult:
    """Chi-square (1 df) goodness of fit of one pair of arm counts to the configured split."""

    scope: str  # a tenant id, or "overall" for the summed counts
    n_control: int
    n_treatment: int
    expected_treatment_share: float
    observed_treatment_share: float
    chi2: float
    p_value: float


@dataclass(frozen=True, slots=True)
class SRMReport:
    """Per-tenant and overall SRM results; ``mismatched_tenants`` lists the tenants that
    failed at ``per_tenant_alpha`` and ``overall_mismatch`` the summed counts at ``alpha``."""

    per_tenant: tuple[SRMResult, ...]
    overall: SRMResult
    alpha: float
    per_tenant_alpha: float
    mismatched_tenants: tuple[str, ...]
    overall_mismatch: bool

    @property
    def clean(self) -> bool:
        """No tenant and not the total shows a sample-ratio mismatch."""
        return not self.mismatched_tenants and not self.overall_mismatch


def _check_share(treatment_share: float) -> None:
    if not (math.isfinite(treatment_share) and 0.0 < treatment_share < 1.0):
        raise ValueError(f"treatment_share must be in (0, 1), got {treatment_share!r}")


def srm_test(
    n_control: int, n_treatment: int, treatment_share: float, *, scope: str = "overall"
) -> SRMResult:
    """Pearson chi-square test of ``(n_control, n_treatment)`` against the split.

    ``χ² = Σ (O - E)² / E`` over both arms with ``E_t = N·share`` and ``E_c = N·(1-share)``,
    on 1 degree of freedom. With no units at all, ``χ² = 0`` and ``p = 1``.
    """
    _check_share(treatment_share)
    if n_control < 0 or n_treatment < 0:
        raise ValueError(f"arm counts must be >= 0, got {n_control!r}, {n_treatment!r}")
    total = n_control + n_treatment
    if total == 0:
        return SRMResult(scope, 0, 0, treatment_share, treatment_share, 0.0, 1.0)
    e_t = total * treatment_share
    e_c = total - e_t
    chi2 = (n_treatment - e_t) ** 2 / e_t + (n_control - e_c) ** 2 / e_c
    return SRMResult(
        scope=scope,
        n_control=n_control,
        n_treatment=n_treatment,
        expected_treatment_share=treatment_share,
        observed_treatment_share=n_treatment / total,
        chi2=chi2,
        p_value=float(special.chdtrc(1, chi2)),
    )


def check_srm(
    tenants: Sequence[TenantArms], treatment_share: float, *, alpha: float = 0.001
) -> SRMReport:
    """SRM per tenant (Bonferroni: each at ``alpha / k``) and overall (at ``alpha``)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"srm alpha must be in (0, 1), got {alpha!r}")
    per = tuple(
        srm_test(a.control.n, a.treatment.n, treatment_share, scope=a.tenant_id) for a in tenants
    )
    overall = srm_test(
        sum(a.control.n for a in tenants),
        sum(a.treatment.n for a in tenants),
        treatment_share,
    )
    per_alpha = alpha / max(1, len(per))
    mismatched = tuple(r.scope for r in per if r.p_value < per_alpha)
    return SRMReport(per, overall, alpha, per_alpha, mismatched, overall.p_value < alpha)
