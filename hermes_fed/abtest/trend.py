"""Quality trend of a version across federated rounds: the negative-feedback-loop signal.

A model that is retrained on its own outputs can drift down slowly, a little each round,
with no single A/B look showing harm (Shumailov et al. 2024, "AI models collapse when
trained on recursively generated data", Nature 631). The trend is judged two ways: the
ordinary-least-squares slope of the latest rounds (material *and* significantly negative),
and the drop of the latest rounds' mean below the version's baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from scipy import special

from hermes_fed.errors import ConfigError

__all__ = ["QualityGuardConfig", "QualityTrend", "quality_trend"]


@dataclass(frozen=True, slots=True)
class QualityGuardConfig:
    """When a production version's quality across rounds counts as falling."""

    window: int = field(default=5, metadata={"help": "Latest rounds in the least-squares fit."})
    max_decline_per_round: float = field(
        default=0.01, metadata={"help": "Slope (quality per round) at or below -this breaches."}
    )
    slope_alpha: float = field(
        default=0.05, metadata={"help": "One-sided level the negative slope must also reach."}
    )
    last_k: int = field(default=3, metadata={"help": "Latest rounds compared to the baseline."})
    max_drop: float = field(
        default=0.05,
        metadata={"help": "Relative drop of the last-k mean below the baseline that breaches."},
    )

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 3:
            raise ConfigError(f"QualityGuardConfig.window must be an int >= 3, got {self.window!r}")
        if isinstance(self.last_k, bool) or not isinstance(self.last_k, int) or self.last_k < 1:
            raise ConfigError(f"QualityGuardConfig.last_k must be an int >= 1, got {self.last_k!r}")
        for name in ("max_decline_per_round", "max_drop"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ConfigError(f"QualityGuardConfig.{name} must be > 0, got {value!r}")
        if not 0.0 < self.slope_alpha < 1.0:
            raise ConfigError(f"QualityGuardConfig.slope_alpha must be in (0, 1), got {self.slope_alpha!r}")


@dataclass(frozen=True, slots=True)
class QualityTrend:
    """The trend figures of a version's per-round quality and whether they breach."""

    rounds: int
    baseline: float
    slope: float | None
    slope_p: float | None
    recent_mean: float | None
    drop: float | None
    breached: bool
    reason: str


def quality_trend(
    scores: Sequence[float], baseline: float | None = None, config: QualityGuardConfig | None = None
) -> QualityTrend:
    """Least-squares slope of the last ``window`` rounds and drop of the last ``last_k``.

    ``baseline`` is the version's quality when promoted (for example its A/B treatment
    mean); by default the mean of its first ``last_k`` rounds. The slope breaches when it is
    <= ``-max_decline_per_round`` *and* significantly negative (one-sided t-test of the OLS
    slope on ``window - 2`` df), so a noisy flat series does not trip it; the drop breaches
    when the last-k mean is more than ``max_drop`` (relative; absolute if the baseline <= 0)
    below the baseline.
    """
    cfg = config or QualityGuardConfig()
    ys = [float(s) for s in scores]
    if any(not math.isfinite(y) for y in ys):
        raise ValueError("quality_trend: scores must be finite")
    if not ys:
        raise ValueError("quality_trend needs at least one round's score, got none")
    base = baseline if baseline is not None else math.fsum(ys[: cfg.last_k]) / len(ys[: cfg.last_k])
    reasons: list[str] = []
    slope = slope_p = recent = drop = None
    if len(ys) >= cfg.window:
        window = ys[-cfg.window :]
        n = len(window)
        x_mean = (n - 1) / 2.0
        y_mean = math.fsum(window) / n
        sxx = math.fsum((i - x_mean) ** 2 for i in range(n))
        slope = math.fsum((i - x_mean) * (y - y_mean) for i, y in enumerate(window)) / sxx
        resid = math.fsum((y - y_mean - slope * (i - x_mean)) ** 2 for i, y in enumerate(window))
        se = math.sqrt(resid / (n - 2) / sxx)
        slope_p = float(special.stdtr(n - 2, slope / se)) if se > 0 else float(slope >= 0)
        if slope <= -cfg.max_decline_per_round and slope_p < cfg.slope_alpha:
            reasons.append(
                f"quality slope {slope:+.4f}/round over the last {n} rounds "
                f"(one-sided p = {slope_p:.3g}) <= -{cfg.max_decline_per_round}"
            )
    # With the default baseline (the first k rounds) the last k must not overlap them.
    if len(ys) >= (cfg.last_k if baseline is not None else 2 * cfg.last_k):
        recent = math.fsum(ys[-cfg.last_k :]) / cfg.last_k
        drop = (base - recent) / base if base > 0.0 else base - recent
        if drop > cfg.max_drop:
            kind = "relative" if base > 0.0 else "absolute"
            reasons.append(
                f"mean quality of the last {cfg.last_k} rounds {recent:.4f} is {drop:.1%} "
                f"({kind}) below the baseline {base:.4f} (> {cfg.max_drop})"
            )
    return QualityTrend(len(ys), base, slope, slope_p, recent, drop, bool(reasons),
                        "; ".join(reasons))  # fmt: skip
