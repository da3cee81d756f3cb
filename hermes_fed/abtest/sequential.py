"""Always-valid inference for an effect that is looked at every round: the normal-mixture mSPRT.

We use the mixture sequential probability ratio test of Johari, Koomen, Pekelis & Walsh 2017
("Peeking at A/B Tests: Why it matters, and what to do about it", KDD; theory in Johari,
Pekelis & Walsh 2022, "Always Valid Inference", Operations Research 70(3)). At each look
the coordinator has an effect estimate ``θ̂`` (the meta-analysed lift across tenants) with
variance ``V``; with a ``N(θ₀, τ²)`` mixture over the alternative the likelihood ratio is

    Λ = sqrt(V / (V + τ²)) · exp( τ² (θ̂ - θ₀)² / (2 V (V + τ²)) )

and the always-valid p-value is the running minimum ``p_n = min(p_{n-1}, 1/Λ_n)``. By
Ville's inequality ``P(∃n: p_n <= α) <= α`` under ``θ = θ₀``, however often one looks and
whenever one stops. The dual always-valid confidence sequence is the running intersection of
``{θ₀ : Λ_n(θ₀) < 1/α}``, i.e. ``θ̂ ± sqrt(2V(V+τ²)/τ² · (log(1/α) + ½ log((V+τ²)/V)))``.

Why mSPRT rather than asymptotic confidence sequences (Waudby-Smith et al. 2023): both are
the same Robbins normal-mixture boundary on an asymptotically Gaussian estimate, so their
guarantees are alike; mSPRT is stated directly in terms of what a round produces (an estimate
and its variance, here from inverse-variance meta-analysis, which needs no raw data), it
yields a p-value that the decision compares with ``alpha`` and records in
``ABTestConcluded``, and its mixing scale ``τ`` is set to the lifts we care about (a few %).
Validity is asymptotic: it needs the estimate to be close to Gaussian with variance
shrinking as data accrue, which holds for cumulative per-arm sufficient statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = ["SequentialState", "msprt_log_likelihood_ratio", "msprt_update"]


def msprt_log_likelihood_ratio(estimate: float, variance: float, tau: float, null: float = 0.0) -> float:
    """``log Λ`` of the normal-mixture SPRT (Johari et al. 2017, eq. 11 with ``H = N(θ₀, τ²)``).

    Parameters
    ----------
    estimate, variance : float
        The effect estimate ``θ̂`` and its variance ``V > 0`` at this look.
    tau : float
        Standard deviation of the mixing distribution over the effect, ``τ > 0``.
    null : float
        The null effect ``θ₀``.
    """
    if not (math.isfinite(variance) and variance > 0.0):
        raise ValueError(f"mSPRT variance must be finite and > 0, got {variance!r}")
    if not (math.isfinite(tau) and tau > 0.0):
        raise ValueError(f"mSPRT tau must be finite and > 0, got {tau!r}")
    if not math.isfinite(estimate):
        raise ValueError(f"mSPRT estimate must be finite, got {estimate!r}")
    t2 = tau * tau
    d = estimate - null
    return 0.5 * math.log(variance / (variance + t2)) + t2 * d * d / (2.0 * variance * (variance + t2))


@dataclass(frozen=True, slots=True)
class SequentialState:
    """The running state of one always-valid test: feed every look to `msprt_update`.

    ``p_value`` is the always-valid p (1 before any look); ``ci_low``/``ci_high`` the
    running intersection of the confidence sequence (infinite before any look); ``scale``
    names the effect scale ("relative" or "absolute") the looks were on.
    """

    looks: int = 0
    p_value: float = 1.0
    ci_low: float = -math.inf
    ci_high: float = math.inf
    scale: str = ""
    last_estimate: float = 0.0
    last_variance: float = 0.0

    def to_json(self) -> dict[str, float | int | str | None]:
        """JSON-ready figures (infinite CI bounds become ``None``)."""
        return {
            "looks": self.looks,
            "p_value": self.p_value,
            "ci_low": self.ci_low if math.isfinite(self.ci_low) else None,
            "ci_high": self.ci_high if math.isfinite(self.ci_high) else None,
            "scale": self.scale,
        }


def msprt_update(
    state: SequentialState,
    estimate: float,
    variance: float,
    *,
    tau: float,
    alpha: float,
    scale: str = "relative",
    null: float = 0.0,
) -> SequentialState:
    """Fold one look into the always-valid p-value and confidence sequence.

    A change of ``scale`` between looks (the control mean of a tenant fell to <= 0, so
    lifts became differences) restarts the test: evidence on one scale says nothing about
    the other. A restart can only raise the p-value.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if state.looks and state.scale != scale:
        state = SequentialState()
    log_lr = msprt_log_likelihood_ratio(estimate, variance, tau, null)
    p_look = math.exp(-log_lr) if log_lr > 0.0 else 1.0
    t2 = tau * tau
    # Solve log Λ(θ₀) = log(1/α) for θ₀: the boundary of the dual confidence sequence.
    radius2 = 2.0 * variance * (variance + t2) / t2
    half = math.sqrt(radius2 * (math.log(1.0 / alpha) + 0.5 * math.log((variance + t2) / variance)))
    return replace(
        state,
        looks=state.looks + 1,
        p_value=min(state.p_value, p_look),
        ci_low=max(state.ci_low, estimate - half),
        ci_high=min(state.ci_high, estimate + half),
        scale=scale,
        last_estimate=estimate,
        last_variance=variance,
    )
