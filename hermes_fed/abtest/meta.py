"""Inverse-variance meta-analysis of per-tenant effects: fixed effect and DerSimonian–Laird.

Tenants are separate experiments on separate populations, so their effects are combined
the way a meta-analysis combines studies (Borenstein et al. 2009, "Introduction to
Meta-Analysis", ch. 11-16), never by pooling raw outcomes (which the original product brief
did, and which lets the biggest tenant's baseline swamp the others' effects).

- Fixed effect: ``w_i = 1/v_i``, ``θ̂ = Σw_iy_i / Σw_i``, ``Var = 1/Σw_i``.
- Heterogeneity: Cochran's ``Q = Σw_i(y_i - θ̂_FE)²`` on ``k - 1`` df and
  ``I² = max(0, (Q - (k-1)) / Q)`` (Higgins & Thompson 2002).
- Random effects, DerSimonian & Laird (1986, "Meta-analysis in clinical trials"):
  ``τ² = max(0, (Q - (k-1)) / (Σw - Σw²/Σw))``, ``w_i* = 1/(v_i + τ²)``.

Agrees with ``statsmodels.stats.meta_analysis.combine_effects(method_re="dl")`` except that
statsmodels 0.15 does not truncate ``τ²`` and ``I²`` at 0 when ``Q < k - 1``; we do, as
DerSimonian–Laird and Higgins–Thompson define them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["MetaResult", "TenantEffect", "combine_effects"]


@dataclass(frozen=True, slots=True)
class TenantEffect:
    """One tenant's effect estimate and its variance (squared standard error)."""

    tenant_id: str
    effect: float
    variance: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.effect):
            raise ValueError(f"TenantEffect.effect must be finite, got {self.effect!r}")
        if not (math.isfinite(self.variance) and self.variance > 0.0):
            raise ValueError(
                f"TenantEffect.variance must be finite and > 0, got {self.variance!r} "
                f"(tenant {self.tenant_id!r})"
            )


@dataclass(frozen=True, slots=True)
class MetaResult:
    """Fixed- and random-effects combination of ``k`` tenant effects.

    ``*_ci_*`` are normal (z) intervals at the level the function was called with;
    ``p_fixed``/``p_random`` are two-sided z-test p-values for effect 0 (one look only;
    use `hermes_fed.abtest.sequential` when looking every round).
    """

    k: int
    fixed: float
    fixed_se: float
    random: float
    random_se: float
    tau2: float
    q: float
    q_p_value: float
    i2: float
    fixed_ci_low: float
    fixed_ci_high: float
    random_ci_low: float
    random_ci_high: float
    p_fixed: float
    p_random: float
    weights_random: tuple[float, ...]


def combine_effects(effects: Sequence[TenantEffect], *, alpha: float = 0.05) -> MetaResult:
    """Inverse-variance fixed-effect and DerSimonian–Laird random-effects combination.

    Parameters
    ----------
    effects : sequence of TenantEffect
        At least one; all on the same scale (all relative lifts or all differences).
    alpha : float
        Two-sided level of the confidence intervals.

    Returns
    -------
    MetaResult
        With ``k == 1`` both estimates are the single effect and ``τ² = Q = I² = 0``.
    """
    if not effects:
        raise ValueError("combine_effects needs at least one TenantEffect, got none")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    y = np.array([e.effect for e in effects], dtype=np.float64)
    v = np.array([e.variance for e in effects], dtype=np.float64)
    k = len(effects)
    w = 1.0 / v
    w_sum = float(w.sum())
    fixed = float(w @ y) / w_sum
    fixed_se = math.sqrt(1.0 / w_sum)
    q = float(w @ (y - fixed) ** 2)
    df = k - 1
    c = w_sum - float(w @ w) / w_sum
    tau2 = max(0.0, (q - df) / c) if df > 0 and c > 0.0 else 0.0
    i2 = max(0.0, (q - df) / q) if q > 0.0 else 0.0
    q_p = float(special.chdtrc(df, q)) if df > 0 else 1.0
    w_re = 1.0 / (v + tau2)
    w_re_sum = float(w_re.sum())
    random = float(w_re @ y) / w_re_sum
    random_se = math.sqrt(1.0 / w_re_sum)
    z = float(special.ndtri(1.0 - alpha / 2.0))
    return MetaResult(
        k=k,
        fixed=fixed,
        fixed_se=fixed_se,
        random=random,
        random_se=random_se,
        tau2=tau2,
        q=q,
        q_p_value=q_p,
        i2=i2,
        fixed_ci_low=fixed - z * fixed_se,
        fixed_ci_high=fixed + z * fixed_se,
        random_ci_low=random - z * random_se,
        random_ci_high=random + z * random_se,
        p_fixed=float(2.0 * special.ndtr(-abs(fixed) / fixed_se)),
        p_random=float(2.0 * special.ndtr(-abs(random) / random_se)),
        weights_random=tuple(float(x) for x in w_re / w_re_sum),
    )
