"""Tiers partition [-1, 1] with half-open intervals (DESIGN.md §5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hermes_fed.quality.config import TierConfig
from hermes_fed.quality.tiers import Tier, tier_intervals, tier_of, tier_weight


@given(st.floats(min_value=-1.0, max_value=1.0, allow_nan=False))
def test_every_score_in_range_has_exactly_one_tier(score: float) -> None:
    # Execute
    containing = [i.tier for i in tier_intervals() if score in i]
    # Assert
    assert containing == [tier_of(score)]


@given(st.floats(min_value=-0.99, max_value=0.5), st.floats(0.01, 0.2), st.floats(0.01, 0.2),
       st.floats(min_value=-1.0, max_value=1.0))
def test_exactly_one_tier_for_any_valid_boundaries(silver: float, d1: float, d2: float,
                                                   score: float) -> None:
    config = TierConfig(silver_from=silver, gold_from=silver + d1,
                        platinum_from=min(1.0, silver + d1 + d2))
    containing = [i.tier for i in tier_intervals(config) if score in i]
    assert containing == [tier_of(score, config)]


@pytest.mark.parametrize(
    ("score", "tier"),
    [(1.0, Tier.PLATINUM), (0.85, Tier.PLATINUM), (0.8499999, Tier.GOLD), (0.6, Tier.GOLD),
     (0.5999, Tier.SILVER), (0.35, Tier.SILVER), (0.3499, Tier.BRONZE),
     (0.3, Tier.BRONZE), (-1.0, Tier.BRONZE)],
)
def test_boundaries_belong_to_the_tier_above(score: float, tier: Tier) -> None:
    assert tier_of(score) is tier


@pytest.mark.parametrize("score", [1.0000001, -1.01, float("nan"), float("inf")])
def test_out_of_range_scores_are_refused(score: float) -> None:
    with pytest.raises(ValueError, match="in \\[-1, 1\\]"):
        tier_of(score)


@pytest.mark.parametrize(("tier", "weight"), [("platinum", 5.0), ("gold", 2.0),
                                              ("silver", 1.0), ("bronze", 0.3)])
def test_training_weights(tier: str, weight: float) -> None:
    assert tier_weight(tier) == weight
