"""decide(): each rule on hand-built arms, config validation, and the recorded numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest
from statsmodels.stats.multitest import multipletests

from hermes_fed.abtest import (
    ArmStats,
    DecisionConfig,
    SequentialState,
    TenantArms,
    Verdict,
    decide,
    holm_adjust,
)
from hermes_fed.errors import ConfigError


def arm(n: int, mean: float, sd: float = 0.2) -> ArmStats:
    """An arm with exactly this size, mean and sample sd."""
    return ArmStats(n, n * mean, (n - 1) * sd * sd + n * mean * mean)


def tenant(tid: str, n: int, control: float, lift: float, sd: float = 0.2) -> TenantArms:
    return TenantArms(tid, arm(n, control, sd), arm(n, control * (1 + lift), sd))


def five(n: int, lift: float) -> list[TenantArms]:
    return [tenant(f"t{i}", n, m, lift) for i, m in enumerate([0.45, 0.6, 0.7, 0.55, 0.65])]


def strict_json(numbers: dict[str, object]) -> None:
    json.dumps(numbers, allow_nan=False)
    orjson.dumps(numbers)


# --- config ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"min_samples_per_arm": 1}, "min_samples_per_arm"),
        ({"min_total_per_arm": -1}, "min_total_per_arm"),
        ({"min_lift": -0.01}, "min_lift"),
        ({"min_lift": math.nan}, "min_lift"),
        ({"treatment_share": 1.0}, "treatment_share"),
        ({"srm_alpha": 0.0}, "srm_alpha"),
        ({"min_duration_days": -1.0}, "min_duration_days"),
        ({"min_duration_days": 10.0, "max_duration_days": 5.0}, "max_duration_days"),
        ({"mixture_sd": 0.0}, "mixture_sd"),
        ({"min_absolute_effect": -1.0}, "min_absolute_effect"),
        ({"relative_min_control": 0.0}, "relative_min_control"),
        ({"relative_max_g": 0.0}, "relative_max_g"),
        ({"mixture_sd_absolute": 0.0}, "mixture_sd_absolute"),
        ({"mixture_sd_absolute": math.inf}, "mixture_sd_absolute"),
        ({"relative_max_g": math.nan}, "relative_max_g"),
        ({"random_effects_min_tenants": 0}, "random_effects_min_tenants"),
        ({"random_effects_min_tenants": True}, "random_effects_min_tenants"),
    ],
)
def test_bad_config_is_refused_naming_the_field_and_value(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError, match=field) as info:
        DecisionConfig(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


def test_defaults_are_the_product_brief_and_documented() -> None:
    cfg = DecisionConfig()
    assert (cfg.min_samples_per_arm, cfg.alpha, cfg.min_lift) == (30, 0.05, 0.02)
    assert all(f.metadata.get("help") for f in DecisionConfig.__dataclass_fields__.values())


# --- rules -------------------------------------------------------------------------------
def test_clear_lift_ships_after_the_minimum_duration_only() -> None:
    tenants = five(2000, 0.05)
    early = decide(tenants, elapsed_days=3.0)
    assert early.verdict is Verdict.CONTINUE
    assert "minimum duration" in early.reasons[0]
    late = decide(tenants, elapsed_days=7.0, sequential=early.sequential)
    assert late.verdict is Verdict.SHIP
    assert late.numbers["meta"]["random"] == pytest.approx(0.05, rel=1e-9)
    assert late.sequential.looks == 2
    strict_json(late.numbers)


def test_significant_lift_below_two_percent_does_not_ship() -> None:
    decision = decide(five(20000, 0.01), elapsed_days=8.0)
    assert decision.numbers["sequential"]["p_value"] < 0.05
    assert decision.verdict is Verdict.ROLLBACK  # futility: the sequence excludes +2%
    assert "upper bound" in decision.reasons[0]


def test_significant_loss_rolls_back_before_the_minimum_duration() -> None:
    # Prepare: ten tenants each too small to show harm alone, clearly worse together
    tenants = [tenant(f"t{i}", 300, 0.6, -0.05) for i in range(10)]
    # Execute
    decision = decide(tenants, elapsed_days=1.0)
    # Assert
    assert all(r["harm_p_holm"] >= 0.05 for r in decision.numbers["tenants"])
    assert decision.verdict is Verdict.ROLLBACK
    assert decision.reasons == [
        f"relative effect -0.0500 (always-valid p = {decision.sequential.p_value:.3g}): significantly worse"
    ]


def test_a_tenant_below_the_floor_is_named_and_left_out_but_does_not_block() -> None:
    # Arrange: four analysable tenants with a real gain, one long-tail tenant below 30
    tenants = [*five(500, 0.05)[:4], tenant("tiny", 29, 0.6, 0.05)]
    # Execute
    decision = decide(tenants, elapsed_days=10.0)
    # Assert
    assert decision.verdict is Verdict.SHIP
    assert "tiny" in decision.reasons[0] and "30" in decision.reasons[0]
    assert decision.numbers["tenants_below_min_samples"] == ["tiny"]
    assert [t["tenant_id"] for t in decision.numbers["tenants"]] == ["t0", "t1", "t2", "t3"]
    assert decision.numbers["meta"]["k"] == 4
    assert decision.sequential.looks == 1
    strict_json(decision.numbers)


def test_no_tenant_at_the_floor_at_the_planned_end_rolls_back() -> None:
    # A test must not outlive its planned end because no tenant ever reached the floor
    tenants = [tenant(f"t{i}", 29, 0.6, 0.2) for i in range(3)]
    decision = decide(tenants, elapsed_days=14.0, config=DecisionConfig(max_duration_days=14.0))
    assert decision.verdict is Verdict.ROLLBACK
    assert decision.reasons[-1] == "inconclusive at planned end (14.0 days)"


def test_no_tenant_at_the_floor_continues_without_a_look() -> None:
    # Arrange
    tenants = [tenant(f"t{i}", 29, 0.6, 0.2) for i in range(3)]
    # Execute
    decision = decide(tenants, elapsed_days=10.0)
    # Assert
    assert decision.verdict is Verdict.CONTINUE
    assert decision.numbers["tenants_below_min_samples"] == ["t0", "t1", "t2"]
    assert decision.numbers["meta"] is None
    assert decision.sequential.looks == 0
    strict_json(decision.numbers)


def test_too_few_units_overall_continues() -> None:
    config = DecisionConfig(min_total_per_arm=1000)
    assert decide(five(199, 0.05), elapsed_days=10.0, config=config).verdict is Verdict.CONTINUE
    assert decide(five(200, 0.05), elapsed_days=10.0, config=config).verdict is Verdict.SHIP


def test_too_few_units_overall_at_the_planned_end_rolls_back_as_inconclusive() -> None:
    # low traffic must not keep a test open past its planned end (it used to: CONTINUE forever)
    config = DecisionConfig(min_total_per_arm=1000, max_duration_days=14.0)
    end = decide(five(199, 0.05), elapsed_days=14.0, config=config)
    assert (end.verdict, end.numbers["rule"]) == (Verdict.ROLLBACK, "inconclusive")
    assert "fewer than 1000" in end.reasons[0] and "planned end" in end.reasons[-1]
    no_end = DecisionConfig(min_total_per_arm=1000, max_duration_days=None)
    assert decide(five(199, 0.05), elapsed_days=100.0, config=no_end).verdict is Verdict.CONTINUE


def test_inconclusive_at_the_planned_end_rolls_back() -> None:
    tenants = five(60, 0.03)
    mid = decide(tenants, elapsed_days=10.0)
    end = decide(tenants, elapsed_days=14.0)
    assert mid.verdict is Verdict.CONTINUE
    assert end.verdict is Verdict.ROLLBACK and "planned end" in end.reasons[0]
    open_ended = decide(tenants, elapsed_days=100.0,
                        config=DecisionConfig(max_duration_days=None))  # fmt: skip
    assert open_ended.verdict is Verdict.CONTINUE


def test_harmed_tenant_is_named_and_rolls_back() -> None:
    tenants = [*five(3000, 0.05)[:4], tenant("victim", 3000, 0.6, -0.1)]
    decision = decide(tenants, elapsed_days=10.0)
    assert decision.verdict is Verdict.ROLLBACK
    assert "victim" in decision.reasons[0] and "guardrail" in decision.reasons[0]
    row = next(r for r in decision.numbers["tenants"] if r["tenant_id"] == "victim")
    assert row["harm_p_holm"] < 0.05 and row["lift"] == pytest.approx(-0.1)


def test_srm_rolls_back_whatever_the_effect() -> None:
    tenants = [*five(3000, 0.05)[:4],
               TenantArms("skewed", arm(3000, 0.6), arm(2400, 0.63))]  # fmt: skip
    decision = decide(tenants, elapsed_days=10.0)
    assert decision.verdict is Verdict.ROLLBACK
    assert decision.reasons[0].startswith("sample-ratio mismatch in skewed")
    assert decision.numbers["srm"]["mismatched_tenants"] == ["skewed"]


def test_configured_uneven_split_is_not_an_srm() -> None:
    tenants = [TenantArms(f"t{i}", arm(9000, 0.6), arm(1000, 0.63)) for i in range(3)]
    decision = decide(tenants, elapsed_days=10.0, config=DecisionConfig(treatment_share=0.1))
    assert decision.numbers["srm"]["clean"]
    assert decide(tenants, elapsed_days=10.0).numbers["srm"]["clean"] is False


def test_non_positive_control_mean_switches_to_absolute_differences() -> None:
    tenants = [TenantArms(f"t{i}", arm(2000, -0.2 + 0.1 * i), arm(2000, -0.1 + 0.1 * i))
               for i in range(3)]  # fmt: skip
    decision = decide(tenants, elapsed_days=10.0)
    assert decision.numbers["scale"] == "absolute"
    assert all(r["lift_kind"] == "absolute" for r in decision.numbers["tenants"])
    assert decision.numbers["meta"]["random"] == pytest.approx(0.1)
    assert decision.verdict is Verdict.SHIP  # min_absolute_effect defaults to 0


@pytest.mark.parametrize(("control", "scale"), [(0.03, "absolute"), (0.0999, "absolute"),
                                                (0.1, "relative"), (0.6, "relative")])
def test_control_means_near_zero_use_absolute_differences(control: float, scale: str) -> None:
    # Prepare: a control mean of 0.03 would make a 0.01 drop a -33% "lift"
    tenants = [TenantArms(f"t{i}", arm(2000, control), arm(2000, control - 0.01)) for i in range(3)]
    # Execute
    decision = decide(tenants, elapsed_days=10.0)
    # Assert
    assert decision.numbers["scale"] == scale
    expected = -0.01 if scale == "absolute" else -0.01 / control
    assert decision.numbers["meta"]["random"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("n", "scale"), [(100, "absolute"), (400, "absolute"), (2000, "relative")])
def test_an_imprecise_control_mean_uses_absolute_differences(n: int, scale: str) -> None:
    # Prepare: control 0.15 with sd 0.6 (the demo's first A/Bs): Fieller's g is 0.61 at 100
    # users, 0.15 at 400, 0.03 at 2000; a ratio over the first two is not a usable lift
    tenants = [TenantArms(f"t{i}", arm(n, 0.15, 0.6), arm(n, 0.35, 0.6)) for i in range(3)]
    # Execute
    decision = decide(tenants, elapsed_days=10.0)
    # Assert
    assert decision.numbers["scale"] == scale
    expected = 0.2 if scale == "absolute" else 0.2 / 0.15
    assert decision.numbers["meta"]["random"] == pytest.approx(expected, rel=1e-6)


def test_a_test_on_the_absolute_scale_stays_there() -> None:
    # Prepare: the first look is imprecise (absolute); by the second the means are precise
    first = decide([TenantArms(f"t{i}", arm(100, 0.15, 0.6), arm(100, 0.35, 0.6)) for i in range(3)],
                   elapsed_days=1.0)  # fmt: skip
    later = [TenantArms(f"t{i}", arm(5000, 0.15, 0.6), arm(5000, 0.35, 0.6)) for i in range(3)]
    # Execute
    kept = decide(later, elapsed_days=2.0, sequential=first.sequential)
    fresh = decide(later, elapsed_days=2.0)
    # Assert: the running test keeps its scale (and its looks); a new one would be relative
    assert first.numbers["scale"] == "absolute"
    assert kept.numbers["scale"] == "absolute" and kept.sequential.looks == 2
    assert fresh.numbers["scale"] == "relative" and fresh.sequential.looks == 1


@pytest.mark.parametrize(("n", "treated", "scale"), [(100, 0.3, "absolute"), (5000, 0.17, "relative")])
def test_each_scale_mixes_over_its_own_tau(n: int, treated: float, scale: str) -> None:
    # Prepare: effects the test can see at each size (z ~ 3)
    tenants = [TenantArms(f"t{i}", arm(n, 0.15, 0.6), arm(n, treated, 0.6)) for i in range(3)]
    # Execute: the same looks with each tau changed in turn
    base = decide(tenants, elapsed_days=10.0)
    other_abs = decide(tenants, elapsed_days=10.0, config=DecisionConfig(mixture_sd_absolute=0.3))
    other_rel = decide(tenants, elapsed_days=10.0, config=DecisionConfig(mixture_sd=0.3))
    # Assert: only the tau of the scale in use moves the always-valid p
    assert base.numbers["scale"] == scale
    p = base.sequential.p_value
    assert p < 1.0
    if scale == "absolute":
        assert other_abs.sequential.p_value != pytest.approx(p) and other_rel.sequential.p_value == p
    else:
        assert other_rel.sequential.p_value != pytest.approx(p) and other_abs.sequential.p_value == p


@pytest.mark.parametrize(("k", "used"), [(1, "fixed"), (2, "fixed"), (3, "random"), (5, "random")])
def test_random_effects_need_three_tenants(k: int, used: str) -> None:
    # Prepare: heterogeneous tenants (+0.1 and +0.3 alternating), so the two estimates differ
    tenants = [TenantArms(f"t{i}", arm(400, 0.15, 0.6), arm(400, 0.25 + 0.2 * (i % 2), 0.6))
               for i in range(k)]  # fmt: skip
    # Execute
    decision = decide(tenants, elapsed_days=10.0)
    # Assert: the sequential test looked at the estimate the decision names
    meta = decision.numbers["meta"]
    assert meta["estimate_used"] == used
    assert decision.sequential.last_estimate == pytest.approx(meta[used])
    legacy = decide(tenants, elapsed_days=10.0, config=DecisionConfig(random_effects_min_tenants=1))
    assert legacy.numbers["meta"]["estimate_used"] == "random"


def test_cuped_is_applied_when_covariates_are_reported() -> None:
    # Prepare: y strongly explained by the pre-period covariate x
    rng = np.random.default_rng(4)
    tenants = []
    for i in range(3):
        x_c, x_t = rng.beta(3, 2, 400), rng.beta(3, 2, 400)
        y_c = 0.1 + 0.8 * x_c + rng.normal(0, 0.05, 400)
        y_t = 0.12 + 0.8 * x_t + rng.normal(0, 0.05, 400)
        tenants.append(TenantArms(f"t{i}", ArmStats.from_values(y_c, x_c),
                                  ArmStats.from_values(y_t, x_t)))  # fmt: skip
    # Execute
    with_cuped = decide(tenants, elapsed_days=10.0)
    without = decide(tenants, elapsed_days=10.0, config=DecisionConfig(use_cuped=False))
    # Assert
    assert all("cuped_theta" in r for r in with_cuped.numbers["tenants"])
    assert with_cuped.numbers["meta"]["random_se"] < 0.5 * without.numbers["meta"]["random_se"]
    strict_json(with_cuped.numbers)


def test_sequential_state_carries_the_running_minimum() -> None:
    strong = decide(five(2000, 0.05), elapsed_days=3.0)
    weaker = decide(five(2000, 0.0), elapsed_days=4.0, sequential=strong.sequential)
    assert weaker.sequential.p_value == strong.sequential.p_value
    assert weaker.sequential.looks == 2
    fresh = decide(five(2000, 0.0), elapsed_days=4.0, sequential=SequentialState())
    assert fresh.sequential.p_value > strong.sequential.p_value


@pytest.mark.parametrize(
    ("tenants", "elapsed", "match"),
    [
        ([], 1.0, "at least one"),
        ([tenant("a", 50, 0.5, 0.0), tenant("a", 50, 0.5, 0.0)], 1.0, "duplicate"),
        ([tenant("a", 50, 0.5, 0.0)], -1.0, "elapsed_days"),
        ([tenant("a", 50, 0.5, 0.0)], math.inf, "elapsed_days"),
    ],
)
def test_bad_calls_are_refused(tenants: list[TenantArms], elapsed: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decide(tenants, elapsed_days=elapsed)


def test_numbers_are_strict_json_even_for_degenerate_arms() -> None:
    tenants = [TenantArms("const", arm(40, 0.5, 0.0), arm(40, 0.5, 0.0)), *five(40, 0.0)]
    decision = decide(tenants, elapsed_days=1.0)
    strict_json(decision.numbers)
    assert decision.numbers["verdict"] == decision.verdict.value


# --- multiplicity ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "p", [[0.01, 0.04, 0.03, 0.005], [0.5, 0.001, 0.2], [0.04], [0.02, 0.02, 0.9, 0.011]]
)
def test_holm_matches_statsmodels(p: list[float]) -> None:
    expected = multipletests(p, method="holm")[1]
    assert holm_adjust(p) == pytest.approx(list(expected), rel=1e-12)


def test_the_rule_that_decided_is_named_in_the_numbers() -> None:
    # each verdict's rule, as the autopilot reads it (an inconclusive candidate is trained on)
    cases = [
        (decide(five(2000, 0.05), elapsed_days=7.0), Verdict.SHIP, "ship"),
        (decide(five(2000, 0.05), elapsed_days=3.0), Verdict.CONTINUE, "continue"),
        (decide(five(20000, 0.01), elapsed_days=8.0), Verdict.ROLLBACK, "futility"),
        (decide([tenant(f"t{i}", 300, 0.6, -0.05) for i in range(10)], elapsed_days=1.0),
         Verdict.ROLLBACK, "worse"),
        (decide(five(60, 0.03), elapsed_days=14.0), Verdict.ROLLBACK, "inconclusive"),
        (decide([tenant(f"t{i}", 29, 0.6, 0.2) for i in range(3)], elapsed_days=14.0),
         Verdict.ROLLBACK, "inconclusive"),
        (decide([*five(3000, 0.05)[:4], tenant("victim", 3000, 0.6, -0.1)], elapsed_days=10.0),
         Verdict.ROLLBACK, "harm"),
        (decide([*five(3000, 0.05)[:4], TenantArms("skewed", arm(3000, 0.6), arm(2400, 0.63))],
                elapsed_days=10.0), Verdict.ROLLBACK, "srm"),
    ]
    for decision, verdict, rule in cases:
        assert (decision.verdict, decision.numbers["rule"]) == (verdict, rule), decision.reasons
