"""Quality trend across rounds (the signal of the negative-feedback-loop guard)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hermes_fed.abtest import QualityGuardConfig, quality_trend
from hermes_fed.errors import ConfigError


def test_slope_and_its_p_value_match_scipy_linregress() -> None:
    scores = [0.80, 0.79, 0.77, 0.78, 0.74, 0.73, 0.70]
    trend = quality_trend(scores)
    ref = stats.linregress(np.arange(5), scores[-5:], alternative="less")
    assert trend.slope == pytest.approx(ref.slope, rel=1e-12)
    assert trend.slope_p == pytest.approx(ref.pvalue, rel=1e-9)


@pytest.mark.parametrize(
    ("scores", "baseline", "breached", "why"),
    [
        ([0.80, 0.80, 0.81, 0.79, 0.80, 0.80], None, False, ""),  # flat
        ([0.80, 0.78, 0.76, 0.74, 0.72, 0.70], None, True, "slope"),  # steady fall
        ([0.80, 0.70, 0.82, 0.70, 0.80, 0.72], None, False, ""),  # noisy, no real trend
        ([0.80, 0.80, 0.80, 0.80, 0.80, 0.80], 0.90, True, "below the baseline"),  # vs A/B mean
        ([0.80, 0.81], None, False, ""),  # too few rounds for either rule
        ([0.80, 0.81, 0.80, 0.70, 0.70, 0.70], None, True, "below the baseline"),  # a step down
        ([0.60, 0.65, 0.70, 0.75, 0.80], None, False, ""),  # rising
        ([0.800, 0.799, 0.798, 0.797, 0.796, 0.795], None, False, ""),  # real but tiny fall
    ],
)
def test_breach_table(scores: list[float], baseline: float | None, breached: bool, why: str) -> None:
    trend = quality_trend(scores, baseline)
    assert trend.breached is breached
    assert why in trend.reason
    assert trend.rounds == len(scores)


def test_negative_baseline_uses_an_absolute_drop() -> None:
    trend = quality_trend([-0.2, -0.2, -0.3], baseline=-0.2,
                          config=QualityGuardConfig(last_k=1, max_drop=0.05))  # fmt: skip
    assert trend.drop == pytest.approx(0.1)
    assert trend.breached and "absolute" in trend.reason


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"window": 2}, "window"), ({"last_k": 0}, "last_k"), ({"max_drop": 0.0}, "max_drop"),
     ({"max_decline_per_round": -1.0}, "max_decline_per_round"),
     ({"slope_alpha": 1.0}, "slope_alpha")],
)  # fmt: skip
def test_bad_guard_config_is_refused(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        QualityGuardConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("scores", [[], [0.5, float("nan")]])
def test_bad_scores_are_refused(scores: list[float]) -> None:
    with pytest.raises(ValueError, match="quality_trend"):
        quality_trend(scores)
