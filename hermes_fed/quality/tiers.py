"""Quality tiers: half-open intervals that partition [-1, 1], and their training weights.

platinum [0.85, 1], gold [0.60, 0.85), silver [0.35, 0.60), bronze [-1, 0.35) by default;
boundaries and weights come from :class:`TierConfig`. DESIGN.md §5 starts silver at 0.30,
exactly the implicit score of an answer the user said nothing about (0.5 - 0.3 not accepted
+ 0.1 no retry), so silence alone made a trajectory training data at weight 1; silver now
needs some evidence (a continued session, a judge, a label).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from .config import TierConfig


class Tier(StrEnum):
    PLATINUM = "platinum"
    GOLD = "gold"
    SILVER = "silver"
    BRONZE = "bronze"


TIER_ORDER: tuple[Tier, ...] = (Tier.PLATINUM, Tier.GOLD, Tier.SILVER, Tier.BRONZE)


@dataclass(frozen=True, slots=True)
class TierInterval:
    """``[low, high)``, or ``[low, high]`` when ``closed_high`` (only the top tier)."""

    tier: Tier
    low: float
    high: float
    closed_high: bool

    def __contains__(self, score: object) -> bool:
        if not isinstance(score, int | float):
            return False
        return self.low <= score < self.high or (self.closed_high and score == self.high)


def tier_intervals(config: TierConfig | None = None) -> tuple[TierInterval, ...]:
    c = config or TierConfig()
    return (
        TierInterval(Tier.PLATINUM, c.platinum_from, 1.0, True),
        TierInterval(Tier.GOLD, c.gold_from, c.platinum_from, False),
        TierInterval(Tier.SILVER, c.silver_from, c.gold_from, False),
        TierInterval(Tier.BRONZE, -1.0, c.silver_from, False),
    )


def tier_of(score: float, config: TierConfig | None = None) -> Tier:
    """The one tier whose interval holds ``score``; ``ValueError`` outside [-1, 1] or NaN."""
    if not isinstance(score, int | float) or math.isnan(score) or not -1.0 <= score <= 1.0:
        raise ValueError(f"score must be a number in [-1, 1], got {score!r}")
    c = config or TierConfig()
    # Compare from the top down so each boundary belongs to the tier above it (half-open).
    if score >= c.platinum_from:
        return Tier.PLATINUM
    if score >= c.gold_from:
        return Tier.GOLD
    if score >= c.silver_from:
        return Tier.SILVER
    return Tier.BRONZE


def tier_weight(tier: Tier | str, config: TierConfig | None = None) -> float:
    """The per-example training weight of ``tier`` (5 / 2 / 1 / 0.3 by default)."""
    c = config or TierConfig()
    weights = {
        Tier.PLATINUM: c.platinum_weight, Tier.GOLD: c.gold_weight,
        Tier.SILVER: c.silver_weight, Tier.BRONZE: c.bronze_weight,
    }
    return weights[Tier(tier)]
