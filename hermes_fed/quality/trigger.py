"""AutoTrigger: when a node should train (DESIGN.md §5).

Train when at least ``min_gap_days`` passed since the last completed run (a local
``node train`` or a federated round the node trained for) AND one of:

* **stale**: the last run is ``>= stale_days`` old (and there is something new to train on);
* **quality_drop**: the mean combined score since the last run fell ``>= drop_fraction``
  (relative) below the mean in the baseline window before it, with enough samples on each
  side for the means to mean something;
* **volume**: ``>= min_new`` new scored trajectories, of which ``>= high_quality_rate``
  reach ``combined_score >= high_quality_score``.

Before the first run only the volume rule applies: the first adapter waits for data.
Every decision carries the rule that fired (or ``wait`` / ``min_gap``) and a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .config import TriggerConfig

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class TriggerInputs:
    """What the trigger reads from the quality projection."""

    now: datetime
    last_run_at: datetime | None
    new_scored: int
    new_high_quality: int
    current_mean: float | None
    current_n: int
    baseline_mean: float | None
    baseline_n: int

    def __post_init__(self) -> None:
        if self.new_high_quality > self.new_scored or self.new_scored < 0:
            raise ValueError(f"TriggerInputs: new_high_quality ({self.new_high_quality}) must "
                             f"be in [0, new_scored ({self.new_scored})]")


@dataclass(frozen=True, slots=True)
class TriggerDecision:
    train: bool
    rule: str
    reason: str
    inputs: TriggerInputs


class AutoTrigger:
    """Evaluates :class:`TriggerInputs` against a :class:`TriggerConfig`."""

    def __init__(self, config: TriggerConfig | None = None) -> None:
        self.config = config or TriggerConfig()

    def decide(self, inputs: TriggerInputs) -> TriggerDecision:
        c = self.config

        def decision(train: bool, rule: str, reason: str) -> TriggerDecision:
            return TriggerDecision(train, rule, reason, inputs)

        age_days: float | None = None
        if inputs.last_run_at is not None:
            age_days = (inputs.now - inputs.last_run_at).total_seconds() / DAY_S
            if age_days < c.min_gap_days:
                return decision(False, "min_gap", f"last run {age_days:.2f} days ago < "
                                f"min_gap_days {c.min_gap_days:g}")
        unmet: list[str] = []
        if age_days is None:
            unmet.append("stale: no previous run")
        elif age_days >= c.stale_days:
            if inputs.new_scored >= c.stale_min_new:
                return decision(True, "stale", f"last run {age_days:.2f} days ago >= "
                                f"stale_days {c.stale_days:g} with {inputs.new_scored} new "
                                "scored trajectories")
            unmet.append(f"stale: {age_days:.2f} days but only {inputs.new_scored} new < "
                         f"stale_min_new {c.stale_min_new}")
        else:
            unmet.append(f"stale: {age_days:.2f} days < {c.stale_days:g}")

        drop = self._drop(inputs, unmet)
        if drop is not None:
            return decision(True, "quality_drop", drop)

        rate = inputs.new_high_quality / inputs.new_scored if inputs.new_scored else 0.0
        if inputs.new_scored >= c.min_new and rate >= c.high_quality_rate:
            return decision(True, "volume", f"{inputs.new_scored} new scored >= {c.min_new} "
                            f"and high-quality rate {rate:.3f} >= {c.high_quality_rate:g}")
        unmet.append(f"volume: {inputs.new_scored} new (need {c.min_new}), high-quality rate "
                     f"{rate:.3f} (need {c.high_quality_rate:g})")
        return decision(False, "wait", "; ".join(unmet))

    def _drop(self, inputs: TriggerInputs, unmet: list[str]) -> str | None:
        c = self.config
        if inputs.last_run_at is None:
            unmet.append("quality_drop: no previous run")
            return None
        if (inputs.baseline_mean is None or inputs.current_mean is None
                or min(inputs.baseline_n, inputs.current_n) < c.drop_min_samples):
            unmet.append(f"quality_drop: samples baseline={inputs.baseline_n} "
                         f"current={inputs.current_n} < {c.drop_min_samples}")
            return None
        if inputs.baseline_mean <= 0:
            unmet.append(f"quality_drop: baseline mean {inputs.baseline_mean:.3f} <= 0, a "
                         "relative drop is undefined")
            return None
        relative = (inputs.baseline_mean - inputs.current_mean) / inputs.baseline_mean
        # 1e-12 absorbs float error at the boundary: 0.8 -> 0.76 is a 5% drop exactly.
        if relative >= c.drop_fraction - 1e-12:
            return (f"mean combined score {inputs.current_mean:.3f} is {relative:.1%} below "
                    f"the baseline {inputs.baseline_mean:.3f} (>= {c.drop_fraction:.1%})")
        unmet.append(f"quality_drop: {relative:.1%} < {c.drop_fraction:.1%}")
        return None
