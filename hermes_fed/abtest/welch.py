"""Welch's two-sample t-test and the lift of treatment over control, from sufficient statistics.

Welch's test (Welch 1947, "The generalization of Student's problem when several different
population variances are involved") does not assume equal arm variances, unlike the pooled
Student's test of the original product brief; arms of an A/B test differ in size (1%/9%
splits) and, under a real effect, in variance.

The lift is relative, ``mean_t / mean_c - 1``, with a delta-method standard error
(gbstats; Deng et al. 2018, "Applying the Delta Method in Metric Analytics", eq. for a
ratio of independent means) only when the control mean is > 0; otherwise a ratio has no
meaning and the absolute difference is reported, with ``lift_kind == "absolute"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import special

from hermes_fed.abtest.arms import TenantArms

__all__ = ["LiftKind", "WelchResult", "welch_test"]

LiftKind = Literal["relative", "absolute"]


@dataclass(frozen=True, slots=True)
class WelchResult:
    """Welch's test of ``treatment - control`` and the lift, for one tenant.

    ``p_value`` is two-sided; ``p_harm`` is one-sided for ``treatment < control`` (the
    guardrail's question). ``ci_*`` bound the absolute difference; ``lift_ci_*`` bound the
    lift on its own scale (``lift_kind``). When both arms have zero variance the test is
    degenerate: ``t`` is ``±inf`` (or 0 for equal means) and ``df = n_c + n_t - 2``.
    """

    tenant_id: str
    n_control: int
    n_treatment: int
    control_mean: float
    treatment_mean: float
    diff: float
    se: float
    t: float
    df: float
    p_value: float
    p_harm: float
    ci_low: float
    ci_high: float
    lift_kind: LiftKind
    lift: float
    lift_se: float
    lift_ci_low: float
    lift_ci_high: float


def _welch_df(var_c: float, n_c: int, var_t: float, n_t: int) -> float:
    """Welch–Satterthwaite degrees of freedom."""
    a = var_c / n_c
    b = var_t / n_t
    denom = a * a / (n_c - 1) + b * b / (n_t - 1)
    if denom == 0.0:
        return float(n_c + n_t - 2)
    return (a + b) ** 2 / denom


def welch_test(arms: TenantArms, *, alpha: float = 0.05) -> WelchResult:
    """Welch's t-test of ``treatment - control`` for one tenant, with lift and CIs.

    Parameters
    ----------
    arms : TenantArms
        Both arms need ``n >= 2`` (else `InsufficientDataError`).
    alpha : float
        Two-sided level of the confidence intervals (``1 - alpha`` coverage).

    Notes
    -----
    ``t = (ȳ_t - ȳ_c) / sqrt(s_t²/n_t + s_c²/n_c)`` against Student's t with the
    Welch–Satterthwaite df; identical to ``scipy.stats.ttest_ind_from_stats(...,
    equal_var=False)``. Relative lift ``L = ȳ_t/ȳ_c - 1`` has delta-method variance
    ``Var(ȳ_t)/ȳ_c² + ȳ_t² Var(ȳ_c)/ȳ_c⁴``; its CI uses the same t quantile.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    c, t = arms.control, arms.treatment
    var_c, var_t = c.variance, t.variance  # raise InsufficientDataError for n < 2
    mean_c, mean_t = c.mean, t.mean
    vm_c, vm_t = var_c / c.n, var_t / t.n
    diff = mean_t - mean_c
    se = math.sqrt(vm_c + vm_t)
    df = _welch_df(var_c, c.n, var_t, t.n)
    if se > 0.0:
        t_stat = diff / se
        p_value = float(2.0 * special.stdtr(df, -abs(t_stat)))
        p_harm = float(special.stdtr(df, t_stat))
    else:  # both arms constant: the difference is known exactly
        t_stat = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
        p_value = 1.0 if diff == 0.0 else 0.0
        p_harm = 0.0 if diff < 0.0 else 1.0 if diff > 0.0 else 0.5
    q = float(special.stdtrit(df, 1.0 - alpha / 2.0))
    ci_low, ci_high = diff - q * se, diff + q * se
    lift_kind: LiftKind
    if mean_c > 0.0:
        lift_kind = "relative"
        lift = mean_t / mean_c - 1.0
        lift_se = math.sqrt(vm_t / mean_c**2 + mean_t**2 * vm_c / mean_c**4)
    else:
        lift_kind, lift, lift_se = "absolute", diff, se
    return WelchResult(
        tenant_id=arms.tenant_id,
        n_control=c.n,
        n_treatment=t.n,
        control_mean=mean_c,
        treatment_mean=mean_t,
        diff=diff,
        se=se,
        t=t_stat,
        df=df,
        p_value=p_value,
        p_harm=p_harm,
        ci_low=ci_low,
        ci_high=ci_high,
        lift_kind=lift_kind,
        lift=lift,
        lift_se=lift_se,
        lift_ci_low=lift - q * lift_se,
        lift_ci_high=lift + q * lift_se,
    )
