"""Sample-ratio mismatch (SRM): do the arm sizes match the configured split?

An SRM means assignment or logging is broken and no effect estimate from the test can be
trusted (Fabijan et al. 2019, "Diagnosing Sample Ratio Mismatch in Online Controlled
Experiments", KDD); the usual threshold is ``p < 0.001``. Two p-values per scope:

- Pearson's chi-square goodness of fit of ``(n_control, n_treatment)`` to the split
  (1 df): the classic fixed-horizon check.
- An anytime-valid p, ``min(1, 1/BF)``, from the Bayes factor of a Beta prior on the
  treatment share against the configured share (the two-arm case of Lindon & Malek 2022,
  "Anytime-Valid Inference for Multinomial Count Data", NeurIPS). Under no mismatch the
  Bayes factor is a nonnegative martingale in the units, so by Ville's inequality
  checking it every round keeps the false-alarm rate <= alpha over the whole test; the
  chi-square at 0.001 per look, 20 looks, 2 scopes would not (up to 4%).

`check_srm` flags on the anytime-valid p by default (``sequential=True``). Tested per
tenant (a node whose hashing or logging is broken), Bonferroni-corrected across tenants,
and overall (summed counts, which catches many small drifts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import special

from hermes_fed.abtest.arms import TenantArms

__all__ = ["SRMReport", "SRMResult", "check_srm", "srm_bayes_factor", "srm_test"]


@dataclass(frozen=True, slots=True)
class SRMResult:
    """SRM figures of one pair of arm counts against the configured treatment share."""

    scope: str  # a tenant id, or "overall" for the summed counts
    n_control: int
    n_treatment: int
    expected_treatment_share: float
    observed_treatment_share: float
    chi2: float
    p_value: float  # chi-square, 1 df
    p_sequential: float  # anytime-valid, min(1, 1/BF)


@dataclass(frozen=True, slots=True)
class SRMReport:
    """Per-tenant and overall SRM results; ``mismatched_tenants`` lists the tenants that
    failed at ``per_tenant_alpha`` and ``overall_mismatch`` the summed counts at ``alpha``."""

    per_tenant: tuple[SRMResult, ...]
    overall: SRMResult
    alpha: float
    per_tenant_alpha: float
    sequential: bool
    mismatched_tenants: tuple[str, ...]
    overall_mismatch: bool

    @property
    def clean(self) -> bool:
        """No tenant and not the total shows a sample-ratio mismatch."""
        return not self.mismatched_tenants and not self.overall_mismatch


def _check_share(treatment_share: float) -> None:
    if not (math.isfinite(treatment_share) and 0.0 < treatment_share < 1.0):
        raise ValueError(f"treatment_share must be in (0, 1), got {treatment_share!r}")


def srm_bayes_factor(
    n_control: int, n_treatment: int, treatment_share: float, *, concentration: float = 100.0
) -> float:
    """``log BF`` of ``Beta(c·p, c·(1-p))`` on the share against the point ``p``.

    ``BF = B(a + n_t, b + n_c) / B(a, b) / (p^n_t (1-p)^n_c)`` with ``a = c·p``,
    ``b = c·(1-p)``: the marginal likelihood of the assignment sequence under the prior over
    its likelihood under the configured share. ``c = 100`` puts the prior's sd of the share
    near 0.05 for an even split: mismatches of a few points are what broken hashing or lost
    logs produce.
    """
    _check_share(treatment_share)
    if not (math.isfinite(concentration) and concentration > 0.0):
        raise ValueError(f"concentration must be > 0, got {concentration!r}")
    a = concentration * treatment_share
    b = concentration - a
    log_marginal = float(special.betaln(a + n_treatment, b + n_control) - special.betaln(a, b))
    log_null = n_treatment * math.log(treatment_share) + n_control * math.log1p(-treatment_share)
    return log_marginal - log_null


def srm_test(
    n_control: int, n_treatment: int, treatment_share: float, *, scope: str = "overall"
) -> SRMResult:
    """Pearson chi-square and anytime-valid tests of ``(n_control, n_treatment)``.

    ``χ² = Σ (O - E)² / E`` over both arms with ``E_t = N·share`` and ``E_c = N·(1-share)``,
    on 1 degree of freedom. With no units at all, ``χ² = 0`` and both p-values are 1.
    """
    _check_share(treatment_share)
    if n_control < 0 or n_treatment < 0:
        raise ValueError(f"arm counts must be >= 0, got {n_control!r}, {n_treatment!r}")
    total = n_control + n_treatment
    if total == 0:
        return SRMResult(scope, 0, 0, treatment_share, treatment_share, 0.0, 1.0, 1.0)
    e_t = total * treatment_share
    e_c = total - e_t
    chi2 = (n_treatment - e_t) ** 2 / e_t + (n_control - e_c) ** 2 / e_c
    log_bf = srm_bayes_factor(n_control, n_treatment, treatment_share)
    return SRMResult(
        scope=scope,
        n_control=n_control,
        n_treatment=n_treatment,
        expected_treatment_share=treatment_share,
        observed_treatment_share=n_treatment / total,
        chi2=chi2,
        p_value=float(special.chdtrc(1, chi2)),
        p_sequential=math.exp(-log_bf) if log_bf > 0.0 else 1.0,
    )


def check_srm(
    tenants: Sequence[TenantArms],
    treatment_share: float,
    *,
    alpha: float = 0.001,
    sequential: bool = True,
) -> SRMReport:
    """SRM per tenant (Bonferroni: each at ``alpha / k``) and overall (at ``alpha``).

    ``sequential`` selects the anytime-valid p (safe to check every round) rather than the
    chi-square p (valid for one look).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"srm alpha must be in (0, 1), got {alpha!r}")
    per = tuple(srm_test(a.control.n, a.treatment.n, treatment_share, scope=a.tenant_id) for a in tenants)
    overall = srm_test(
        sum(a.control.n for a in tenants),
        sum(a.treatment.n for a in tenants),
        treatment_share,
    )
    per_alpha = alpha / max(1, len(per))

    def p(r: SRMResult) -> float:
        return r.p_sequential if sequential else r.p_value

    mismatched = tuple(r.scope for r in per if p(r) < per_alpha)
    return SRMReport(per, overall, alpha, per_alpha, sequential, mismatched, p(overall) < alpha)
