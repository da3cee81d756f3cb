"""AutoTrigger rules of DESIGN.md §5, each decision with its rule and reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hermes_fed.quality.config import TriggerConfig
from hermes_fed.quality.trigger import AutoTrigger, TriggerInputs

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def inputs(days: float | None, *, new: int = 0, hq: int = 0, current: float | None = None,
           current_n: int = 0, baseline: float | None = None,
           baseline_n: int = 0) -> TriggerInputs:
    last = None if days is None else NOW - timedelta(days=days)
    return TriggerInputs(NOW, last, new, hq, current, current_n, baseline, baseline_n)


@pytest.mark.parametrize(
    ("case", "train", "rule", "reason_has"),
    [
        # min gap blocks everything, even a collapse in quality
        (inputs(2.9, new=5000, hq=5000, current=0.1, current_n=100, baseline=0.9,
                baseline_n=100), False, "min_gap", "2.90 days"),
        (inputs(14.0, new=1), True, "stale", ">= stale_days 14"),
        (inputs(20.0, new=0), False, "wait", "stale_min_new"),
        # 0.8 -> 0.76 is exactly a 5% drop
        (inputs(3.0, new=40, current=0.76, current_n=40, baseline=0.8, baseline_n=40),
         True, "quality_drop", "5.0% below"),
        (inputs(3.0, new=40, current=0.77, current_n=40, baseline=0.8, baseline_n=40),
         False, "wait", "quality_drop: 3.8%"),
        # too few samples for a drop to count
        (inputs(3.0, new=10, current=0.1, current_n=10, baseline=0.8, baseline_n=40),
         False, "wait", "current=10 < 30"),
        (inputs(5.0, new=500, hq=200), True, "volume", "rate 0.400 >= 0.4"),
        (inputs(5.0, new=500, hq=199), False, "wait", "rate 0.398"),
        (inputs(5.0, new=499, hq=499), False, "wait", "499 new (need 500)"),
        # before the first run only volume applies
        (inputs(None, new=600, hq=300), True, "volume", "600 new"),
        (inputs(None, new=10, hq=10), False, "wait", "no previous run"),
        (inputs(4.0, new=40, current=-0.5, current_n=40, baseline=-0.1, baseline_n=40),
         False, "wait", "relative drop is undefined"),
    ],
)
def test_decisions(case: TriggerInputs, train: bool, rule: str, reason_has: str) -> None:
    # Execute
    decision = AutoTrigger().decide(case)
    # Assert
    assert (decision.train, decision.rule) == (train, rule), decision.reason
    assert reason_has in decision.reason


def test_thresholds_come_from_config() -> None:
    trigger = AutoTrigger(TriggerConfig(min_gap_days=1, min_new=10, high_quality_rate=0.5))
    assert trigger.decide(inputs(1.5, new=10, hq=5)).rule == "volume"
    assert AutoTrigger().decide(inputs(1.5, new=10, hq=5)).rule == "min_gap"


def test_inconsistent_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="new_high_quality"):
        inputs(5.0, new=3, hq=4)
