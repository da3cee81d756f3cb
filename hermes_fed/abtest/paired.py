"""Offline evaluation: candidate vs current adapter on each node's held-out split, paired.

Each node scores both adapters on the same held-out examples and reports, as one
`ArmStats`, the sufficient statistics of the per-example difference ``d = candidate -
current`` with the current adapter's score as the covariate ``x`` (``sum_x``, ``sum_x2``,
``sum_xy``): no example leaves the node, and pairing removes the between-example variance
that two independent arms would carry.

Per tenant, a one-sample t-test of ``d̄`` (the paired t-test, Student 1908), and the lift
``d̄ / x̄`` with a delta-method standard error that uses the covariance of ``d̄`` and ``x̄``
(Deng et al. 2018, "Applying the Delta Method in Metric Analytics"): relative when the
current mean ``x̄ > 0``, otherwise the absolute difference. `decide_offline` combines the
tenants like `decide` (DerSimonian–Laird, Holm guardrail) but for a single look, so it uses
fixed-sample p-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from scipy import special

from hermes_fed.abtest.arms import ArmStats
from hermes_fed.abtest.decision import Decision, DecisionConfig, Verdict, _json_safe, holm_adjust
from hermes_fed.abtest.meta import MetaResult, TenantEffect, combine_effects
from hermes_fed.abtest.sequential import SequentialState
from hermes_fed.abtest.welch import LiftKind, WelchResult

__all__ = ["decide_offline", "paired_test"]


def paired_test(tenant_id: str, differences: ArmStats, *, alpha: float = 0.05) -> WelchResult:
    """Paired t-test of ``candidate - current`` for one tenant, as a `WelchResult`.

    ``differences`` holds ``d`` in ``n/sum/sumsq`` and the current score in the covariate
    sums (needed for the relative lift). ``n_control == n_treatment == n``; ``df = n - 1``;
    ``control_mean`` is the current adapter's mean and ``treatment_mean`` the candidate's.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    n = differences.n
    var_d = differences.variance  # raises InsufficientDataError for n < 2
    d = differences.mean
    se = math.sqrt(var_d / n)
    df = float(n - 1)
    if se > 0.0:
        t = d / se
        p_value = float(2.0 * special.stdtr(df, -abs(t)))
        p_harm = float(special.stdtr(df, t))
    else:
        t = 0.0 if d == 0.0 else math.copysign(math.inf, d)
        p_value = 1.0 if d == 0.0 else 0.0
        p_harm = 0.0 if d < 0.0 else 1.0 if d > 0.0 else 0.5
    q = float(special.stdtrit(df, 1.0 - alpha / 2.0))
    lift_kind: LiftKind = "absolute"
    lift, lift_se, current = d, se, math.nan
    if differences.has_covariate:
        current, s_xx, s_xy = differences.covariate_moments()
        if current > 0.0:
            var_x = s_xx / (n - 1) / n  # Var(x̄)
            cov_dx = s_xy / (n - 1) / n  # Cov(d̄, x̄)
            var_lift = var_d / n / current**2 + d * d * var_x / current**4 - 2.0 * d * cov_dx / current**3
            lift_kind, lift, lift_se = "relative", d / current, math.sqrt(max(0.0, var_lift))
    return WelchResult(
        tenant_id=tenant_id,
        n_control=n,
        n_treatment=n,
        control_mean=current,
        treatment_mean=current + d,
        diff=d,
        se=se,
        t=t,
        df=df,
        p_value=p_value,
        p_harm=p_harm,
        ci_low=d - q * se,
        ci_high=d + q * se,
        lift_kind=lift_kind,
        lift=lift,
        lift_se=lift_se,
        lift_ci_low=lift - q * lift_se,
        lift_ci_high=lift + q * lift_se,
    )


def decide_offline(results: Sequence[WelchResult], *, config: DecisionConfig | None = None) -> Decision:
    """Promote the candidate (SHIP) on held-out evidence, one look.

    Rules: no tenant with ``min_samples_per_arm`` examples -> CONTINUE (a tenant below it
    is named and left out, as in `decide`, so a long-tail tenant does not block); a tenant
    significantly worse (one-sided paired p, Holm across tenants, < ``alpha``) -> ROLLBACK;
    random-effects lift significant (z-test) and >= ``min_lift`` -> SHIP; significantly
    negative -> ROLLBACK; otherwise ROLLBACK as not shown to be better (offline evidence is
    not accumulated: re-run on a larger held-out split instead). Durations and SRM do not
    apply.
    """
    cfg = config or DecisionConfig()
    if not results:
        raise ValueError("decide_offline needs at least one tenant's paired result, got none")
    short = [r.tenant_id for r in results if r.n_treatment < cfg.min_samples_per_arm]
    results = [r for r in results if r.n_treatment >= cfg.min_samples_per_arm]
    scale = "relative" if all(r.lift_kind == "relative" for r in results) else "absolute"
    bar = cfg.min_lift if scale == "relative" else cfg.min_absolute_effect
    harm_adj = holm_adjust([r.p_harm for r in results])
    harmed = [r.tenant_id for r, p in zip(results, harm_adj, strict=True) if p < cfg.alpha]
    effects = [
        TenantEffect(r.tenant_id, *((r.lift, r.lift_se**2) if scale == "relative" else (r.diff, r.se**2)))
        for r in results
        if (r.lift_se if scale == "relative" else r.se) > 0.0
    ]
    meta = combine_effects(effects, alpha=cfg.alpha) if effects else None
    reasons: list[str] = []
    if short:
        reasons.append(f"fewer than {cfg.min_samples_per_arm} held-out examples in {', '.join(short)}: "
                       "not analysed at this look")
    if not results:
        verdict = Verdict.CONTINUE
    elif harmed:
        verdict = Verdict.ROLLBACK
        reasons.append(
            f"guardrail: tenant(s) {', '.join(harmed)} significantly worse (Holm-adjusted p < {cfg.alpha})"
        )
    elif meta is None:
        verdict = Verdict.ROLLBACK
        reasons.append("no tenant has a non-degenerate paired difference")
    else:
        est, p = (meta.random, meta.p_random) if cfg.random_effects else (meta.fixed, meta.p_fixed)
        what = f"{scale} effect {est:+.4f} (p = {p:.3g})"
        if p < cfg.alpha and est >= bar:
            verdict = Verdict.SHIP
            reasons.append(f"{what}: significant and >= {bar}")
        elif p < cfg.alpha and est < 0.0:
            verdict = Verdict.ROLLBACK
            reasons.append(f"{what}: significantly worse")
        else:
            verdict = Verdict.ROLLBACK
            reasons.append(f"{what}: not shown to reach {bar}")
    numbers: dict[str, Any] = _json_safe(
        {
            "verdict": verdict,
            "mode": "offline",
            "scale": scale,
            "config": {f: getattr(cfg, f) for f in DecisionConfig.__dataclass_fields__},
            "tenants": [
                {**{k: getattr(r, k) for k in WelchResult.__slots__}, "harm_p_holm": h}
                for r, h in zip(results, harm_adj, strict=True)
            ],
            "tenants_below_min_samples": short,
            "meta": None if meta is None else {k: getattr(meta, k) for k in MetaResult.__slots__},
        }
    )
    return Decision(verdict, reasons, numbers, SequentialState())
