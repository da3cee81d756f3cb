"""Seeded simulations of whole tests: peeking, a true lift, a harmed tenant, a broken split.

Five heterogeneous tenants (different baselines and traffic); one look per round (one
round a day); Monte Carlo error bounds are stated next to each rate.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from hermes_fed.abtest import (
    DecisionConfig,
    SequentialState,
    TenantEffect,
    Verdict,
    check_srm,
    combine_effects,
    decide,
    msprt_update,
    welch_test,
)
from hermes_fed.abtest.decision import Decision

from .simulation import Simulation, simulate

UNITS = [40, 60, 80, 100, 120]  # per tenant per round, both arms together
BASELINES = [0.45, 0.60, 0.70, 0.55, 0.65]
ROUNDS = 20


def _mc_sd(rate: float, runs: int) -> float:
    return math.sqrt(rate * (1 - rate) / runs)


def _run_until_verdict(sim: Simulation, run: int, config: DecisionConfig,
                       rounds: int = ROUNDS) -> Decision:  # fmt: skip
    state: SequentialState | None = None
    decision = None
    for look in range(rounds):
        decision = decide(sim.arms(run, look), elapsed_days=float(look + 1), config=config,
                          sequential=state)  # fmt: skip
        state = decision.sequential
        if decision.verdict is not Verdict.CONTINUE:
            break
    assert decision is not None
    return decision


def test_sequential_test_keeps_alpha_under_peeking_while_naive_tests_inflate() -> None:
    # Prepare: no true effect anywhere; 1000 seeded tests of 20 rounds
    runs, alpha = 1000, 0.05
    sim = simulate(7, sims=runs, rounds=ROUNDS, units_per_round=UNITS,
                   control_means=BASELINES, lifts=[0.0] * 5)  # fmt: skip
    sequential_rejections = naive_rejections = 0
    # Execute: the same meta-analysed lift, looked at every round, two ways
    for run in range(runs):
        state, naive = SequentialState(), False
        for look in range(ROUNDS):
            tests = [welch_test(a) for a in sim.arms(run, look)]
            meta = combine_effects([TenantEffect(w.tenant_id, w.lift, w.lift_se**2) for w in tests])
            state = msprt_update(state, meta.random, meta.random_se**2, tau=0.05, alpha=alpha)
            naive = naive or meta.p_random < alpha
        sequential_rejections += state.p_value < alpha
        naive_rejections += naive
    # Assert
    sequential_rate, naive_rate = sequential_rejections / runs, naive_rejections / runs
    print(f"false-positive rate over {ROUNDS} looks: mSPRT {sequential_rate:.3f}, "
          f"naive {naive_rate:.3f} ({runs} runs)")  # fmt: skip
    assert sequential_rate <= alpha + 2 * _mc_sd(alpha, runs)
    assert naive_rate > alpha + 3 * _mc_sd(alpha, runs)


def test_no_effect_never_ships_and_rarely_trips_the_guardrail() -> None:
    runs = 200
    sim = simulate(11, sims=runs, rounds=ROUNDS, units_per_round=UNITS,
                   control_means=BASELINES, lifts=[0.0] * 5)  # fmt: skip
    decisions = [_run_until_verdict(sim, run, DecisionConfig()) for run in range(runs)]
    ships = sum(d.verdict is Verdict.SHIP for d in decisions)
    trips = sum(any("guardrail" in r or "sample-ratio" in r for r in d.reasons) for d in decisions)
    print(f"no effect, {runs} runs: SHIP {ships / runs:.3f}, guardrail/SRM trips {trips / runs:.3f}")
    assert ships / runs <= 0.05 + 2 * _mc_sd(0.05, runs)
    assert trips / runs <= 0.05 + 2 * _mc_sd(0.05, runs)
    assert all(d.verdict is Verdict.ROLLBACK for d in decisions)  # futility or planned end


def test_true_five_percent_lift_across_five_heterogeneous_tenants_ships() -> None:
    # Prepare
    runs = 50
    sim = simulate(12, sims=runs, rounds=ROUNDS, units_per_round=UNITS,
                   control_means=BASELINES, lifts=[0.05] * 5)  # fmt: skip
    # Execute
    decisions = [_run_until_verdict(sim, run, DecisionConfig()) for run in range(runs)]
    # Assert
    ship_rate = sum(d.verdict is Verdict.SHIP for d in decisions) / runs
    days = sorted(d.numbers["elapsed_days"] for d in decisions if d.verdict is Verdict.SHIP)
    print(f"+5% lift, {runs} runs: SHIP {ship_rate:.2f}, median day {days[len(days) // 2]:.0f}")
    assert ship_rate >= 0.9
    first = next(d for d in decisions if d.verdict is Verdict.SHIP)
    assert first.numbers["elapsed_days"] >= 7  # the minimum duration held
    assert first.numbers["meta"]["random"] == pytest.approx(0.05, abs=0.03)
    assert first.numbers["sequential"]["p_value"] < 0.05


def test_one_harmed_tenant_blocks_ship_through_the_guardrail() -> None:
    # Prepare: four tenants gain 5%, a smaller fifth loses 12%
    runs = 50
    units, lifts = [160, 160, 160, 160, 80], [0.05, 0.05, 0.05, 0.05, -0.12]
    sim = simulate(13, sims=runs, rounds=ROUNDS, units_per_round=units,
                   control_means=BASELINES, lifts=lifts)  # fmt: skip
    # Execute
    decisions = [_run_until_verdict(sim, run, DecisionConfig()) for run in range(runs)]
    # Assert: never shipped; almost always stopped by the guardrail naming the tenant
    assert not any(d.verdict is Verdict.SHIP for d in decisions)
    by_guardrail = [d for d in decisions
                    if d.verdict is Verdict.ROLLBACK and "tenant-4" in " ".join(d.reasons)
                    and "guardrail" in d.reasons[0]]  # fmt: skip
    print(f"one tenant -12%, {runs} runs: stopped by the guardrail {len(by_guardrail) / runs:.2f}")
    assert len(by_guardrail) >= 0.9 * runs


def test_the_guardrail_alone_turns_a_ship_into_a_rollback() -> None:
    # Prepare: day 10 of one run, four big tenants gaining 5% and a small one losing 15%;
    # the fixed-effect estimate lets the big tenants' gain outweigh the small one's loss
    # (the default random-effects estimate would itself refuse to ship such heterogeneity).
    config = DecisionConfig(random_effects=False)
    sim = simulate(14, sims=1, rounds=10, units_per_round=[400, 400, 400, 400, 60],
                   control_means=BASELINES, lifts=[0.05, 0.05, 0.05, 0.05, -0.15])  # fmt: skip
    arms = sim.arms(0, 9)
    # Execute
    without = decide(arms[:4], elapsed_days=10.0, config=config)
    with_harmed = decide(arms, elapsed_days=10.0, config=config)
    # Assert: the overall effect still clears the bar; only the guardrail stops it
    assert without.verdict is Verdict.SHIP
    assert with_harmed.numbers["sequential"]["p_value"] < 0.05
    assert with_harmed.numbers["meta"]["fixed"] >= 0.02
    assert with_harmed.verdict is Verdict.ROLLBACK
    assert with_harmed.reasons == [
        "guardrail: tenant(s) tenant-4 significantly harmed (Holm-adjusted always-valid p < 0.05)"
    ]


def test_srm_detected_when_the_split_is_off() -> None:
    # Prepare: tenant-2's assignment sends 40% to treatment instead of 50%
    runs = 20
    sim = simulate(15, sims=runs, rounds=ROUNDS, units_per_round=[200] * 5,
                   control_means=BASELINES, lifts=[0.05] * 5,
                   treatment_share=[0.5, 0.5, 0.4, 0.5, 0.5])  # fmt: skip
    # Execute
    decisions = [_run_until_verdict(sim, run, DecisionConfig()) for run in range(runs)]
    final = [check_srm(sim.arms(run, ROUNDS - 1), 0.5, alpha=0.001) for run in range(runs)]
    # Assert: caught in every run (by the total or the tenant, whichever crosses first), and
    # with all rounds in, the broken tenant and only it is named
    for d in decisions:
        assert d.verdict is Verdict.ROLLBACK
        assert d.reasons[0].startswith("sample-ratio mismatch in ")
        assert not d.numbers["srm"]["clean"]
    assert all(r.mismatched_tenants == ("tenant-2",) for r in final)


def _ship_rate(sim: Simulation, runs: int, config: DecisionConfig, rounds: int) -> float:
    decisions = [_run_until_verdict(sim, run, config, rounds) for run in range(runs)]
    return sum(d.verdict is Verdict.SHIP for d in decisions) / runs


# The demo's A/B: two large tenants, ~137 users a day each, 30% on the candidate, looked at
# once a day for 4 days (the minimum duration too), control quality ~0.15 with sd ~0.2.
DEMO_PLAN: dict[str, Any] = {"treatment_share": 0.3, "min_duration_days": 4.0, "max_duration_days": 4.0,
             "min_total_per_arm": 60}  # fmt: skip
# The rule before Fieller's g, the fixed effect for two tenants and a tau per scale
LEGACY: dict[str, Any] = {"relative_max_g": math.inf, "random_effects_min_tenants": 1,
                          "mixture_sd_absolute": 0.05}  # fmt: skip


def _demo_sim(seed: int, runs: int, lifts: list[float]) -> Simulation:
    return simulate(seed, sims=runs, rounds=4, units_per_round=[137, 137], control_means=[0.15, 0.15],
                    lifts=lifts, kappa=2.0, treatment_share=0.3)  # fmt: skip


def test_low_imprecise_baselines_keep_alpha() -> None:
    # Prepare: no effect; the demo's plan
    runs = 1000
    sim = _demo_sim(31, runs, [0.0, 0.0])
    # Execute
    rate = _ship_rate(sim, runs, DecisionConfig(**DEMO_PLAN), rounds=4)
    # Assert
    print(f"no effect, demo plan, {runs} runs: SHIP {rate:.3f}")
    assert rate <= 0.05 + 2 * _mc_sd(0.05, runs)


def test_low_imprecise_baselines_detect_what_the_ratio_could_not() -> None:
    # Prepare: the candidate raises both tenants' mean quality 0.15 -> 0.225 (a third of a
    # user's sd: the size of the demo's effects)
    runs = 400
    sim = _demo_sim(32, runs, [0.5, 0.5])
    # Execute
    now = _ship_rate(sim, runs, DecisionConfig(**DEMO_PLAN), rounds=4)
    legacy = _ship_rate(sim, runs, DecisionConfig(**DEMO_PLAN, **LEGACY), rounds=4)
    # Assert: the relative lift over an imprecise mean shipped under a fifth of them
    print(f"+0.075 on 0.15, demo plan, {runs} runs: SHIP {now:.2f} (ratio and random effects {legacy:.2f})")
    assert now >= 0.85
    assert legacy <= 0.3


def test_low_imprecise_baselines_one_tenant_harmed_is_not_shipped() -> None:
    # Prepare: one tenant gains as much as the other loses (the fixed effect is ~0)
    runs = 400
    sim = _demo_sim(33, runs, [0.5, -0.5])
    # Execute
    rate = _ship_rate(sim, runs, DecisionConfig(**DEMO_PLAN), rounds=4)
    # Assert
    print(f"+50%/-50%, demo plan, {runs} runs: SHIP {rate:.3f}")
    assert rate <= 0.05 + 2 * _mc_sd(0.05, runs)
