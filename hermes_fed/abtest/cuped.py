"""CUPED: variance reduction with a pre-period covariate, from sufficient statistics alone.

Deng, Xu, Kohavi & Walker 2013, "Improving the Sensitivity of Online Controlled Experiments
by Utilizing Pre-Experiment Data" (WSDM). Each unit's outcome ``y`` is replaced by
``y' = y - θ (x - μ_x)`` where ``x`` is the unit's pre-period value of the metric (for
example the user's mean session quality before the test) and ``μ_x`` the covariate mean
over both arms. ``x`` is independent of the assignment, so ``E[ȳ'_t - ȳ'_c]`` is the same
treatment effect, while ``Var(y') = Var(y)(1 - ρ²)`` at the optimal ``θ``.

``θ`` is the pooled within-arm regression slope ``(S_xy,c + S_xy,t) / (S_xx,c + S_xx,t)``
(centred sums per arm), so a treatment effect on ``y`` does not leak into ``θ``; with it
the CUPED difference equals the treatment coefficient of the ANCOVA ``y ~ 1 + arm + x``.
The adjusted arms are returned as ordinary `ArmStats` of ``y'`` (their ``Σy'²`` expands
into the reported sums), so Welch's test and the meta-analysis run on them unchanged. The
one degree of freedom spent on ``θ`` is ignored, as in Deng et al.
"""

from __future__ import annotations

from dataclasses import dataclass

from hermes_fed.abtest.arms import ArmStats, TenantArms

__all__ = ["CupedResult", "cuped_adjust"]


@dataclass(frozen=True, slots=True)
class CupedResult:
    """The CUPED slope and the tenant's arms of the adjusted metric ``y'``."""

    theta: float
    covariate_mean: float
    adjusted: TenantArms


def _adjust_arm(arm: ArmStats, theta: float, mu: float) -> ArmStats:
    assert arm.sum_x is not None and arm.sum_x2 is not None and arm.sum_xy is not None
    n = arm.n
    # Σ(x - μ) and Σ(x - μ)², Σy(x - μ): the expansions of Σy' and Σy'².
    sx_c = arm.sum_x - n * mu
    sxx_c = arm.sum_x2 - 2.0 * mu * arm.sum_x + n * mu * mu
    sxy_c = arm.sum_xy - mu * arm.sum
    total = arm.sum - theta * sx_c
    total_sq = arm.sumsq - 2.0 * theta * sxy_c + theta * theta * sxx_c
    # Rounding can leave Σy'² a few ulps below (Σy')²/n or below 0 for near-constant y'.
    total_sq = max(total_sq, total * total / n if n else 0.0, 0.0)
    return ArmStats(n, total, total_sq)


def cuped_adjust(arms: TenantArms) -> CupedResult:
    """CUPED-adjust one tenant's arms; both arms need covariate sums and ``n >= 1``.

    Returns ``θ = 0`` (no adjustment) when the covariate is constant within arms.
    """
    c, t = arms.control, arms.treatment
    if not (c.has_covariate and t.has_covariate):
        raise ValueError(f"cuped_adjust needs covariate sums in both arms of tenant {arms.tenant_id!r}")
    _, sxx_c, sxy_c = c.covariate_moments()
    _, sxx_t, sxy_t = t.covariate_moments()
    sxx = sxx_c + sxx_t
    theta = (sxy_c + sxy_t) / sxx if sxx > 0.0 else 0.0
    assert c.sum_x is not None and t.sum_x is not None
    mu = (c.sum_x + t.sum_x) / (c.n + t.n)
    adjusted = TenantArms(arms.tenant_id, _adjust_arm(c, theta, mu), _adjust_arm(t, theta, mu))
    return CupedResult(theta, mu, adjusted)
