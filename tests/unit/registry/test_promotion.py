"""The promotion state machine (invariants P1-P4) and the negative-feedback-loop guard."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_fed.abtest import QualityGuardConfig
from hermes_fed.errors import ConfigError, IllegalTransitionError
from hermes_fed.registry.promotion import (
    TRANSITIONS,
    Promoted,
    PromotionConfig,
    RegistryState,
    RolledBack,
    Stage,
    apply,
    fact_from_event,
    fact_to_event,
    feedback_guard,
    promote,
    replay,
    rollback,
)


def to_production(state: RegistryState, version: str) -> RegistryState:
    for _ in range(4):
        state = apply(state, promote(state, version))
    return state


def test_stages_follow_candidate_canary_ab_production_with_configured_fractions() -> None:
    # Prepare
    cfg = PromotionConfig(canary_fraction=0.02, ab_fraction=0.1)
    state = RegistryState()
    seen = []
    # Execute
    for _ in range(4):
        fact = promote(state, "v1", cfg, reason="ok")
        state = apply(state, fact)
        seen.append((fact.stage, fact.traffic_fraction))
    # Assert
    assert seen == [(Stage.CANDIDATE, 0.0), (Stage.CANARY, 0.02), (Stage.AB, 0.1),
                    (Stage.PRODUCTION, 1.0)]  # fmt: skip
    assert state.production == "v1" and state.production_lineage == ("v1",)
    assert state.traffic() == {"v1": 1.0}


def test_default_fractions_are_one_and_nine_percent() -> None:
    state = replay([Promoted("v1", Stage.CANDIDATE, 0.0), Promoted("v1", Stage.CANARY, 0.01)])
    assert state.traffic() == {"v1": 0.01, None: 0.99}
    state = apply(state, promote(state, "v1"))
    assert state.traffic() == {"v1": 0.09, None: pytest.approx(0.91)}


@pytest.mark.parametrize(
    ("facts", "bad", "message"),
    [
        ([], Promoted("v1", Stage.CANARY, 0.01), "from unregistered to canary"),
        ([Promoted("v1", Stage.CANDIDATE, 0.0)], Promoted("v1", Stage.AB, 0.09),
         "from candidate to ab"),
        ([Promoted("v1", Stage.CANDIDATE, 0.0)], Promoted("v1", Stage.PRODUCTION, 1.0),
         "from candidate to production"),
        ([Promoted("v1", Stage.CANDIDATE, 0.0)], Promoted("v1", Stage.CANDIDATE, 0.0),
         "from candidate to candidate"),
        ([Promoted("v1", Stage.CANDIDATE, 0.0), RolledBack("v1", None, "bad")],
         Promoted("v1", Stage.CANARY, 0.01), "from rolled_back to canary"),
        ([Promoted("v1", Stage.CANDIDATE, 0.0), RolledBack("v1", None, "bad")],
         RolledBack("v1", None, "again"), "from rolled_back to rolled_back"),
        ([], RolledBack("v1", None, "x"), "from unregistered to rolled_back"),
        ([], Promoted("v1", Stage.SUPERSEDED, 0.0), "from unregistered to superseded"),
        ([Promoted("v1", Stage.CANDIDATE, 0.0)], Promoted("v1", Stage.CANARY, 0.0),
         "fraction 0.0"),
        ([], Promoted("v1", Stage.CANDIDATE, 0.5), "serves no traffic"),
    ],
)  # fmt: skip
def test_p1_illegal_transitions_raise_naming_version_from_and_to(
    facts: list[Promoted | RolledBack], bad: Promoted | RolledBack, message: str
) -> None:
    # Prepare
    state = replay(facts)
    # Execute / Assert
    with pytest.raises(IllegalTransitionError, match=message) as info:
        apply(state, bad)
    assert "'v1'" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_p2_one_version_per_exclusive_stage() -> None:
    state = replay([Promoted("v1", Stage.CANDIDATE, 0.0), Promoted("v1", Stage.CANARY, 0.01),
                    Promoted("v2", Stage.CANDIDATE, 0.0)])  # fmt: skip
    with pytest.raises(IllegalTransitionError, match="canary is held by 'v1'"):
        promote(state, "v2")
    state = apply(state, promote(state, "v1"))  # v1 moves on to ab; canary is free
    state = apply(state, promote(state, "v2"))
    assert state.traffic() == {"v1": 0.09, "v2": 0.01, None: pytest.approx(0.9)}


def test_p3_production_supersedes_and_rollback_restores_the_predecessor() -> None:
    # Prepare
    state = to_production(to_production(RegistryState(), "v1"), "v2")
    assert state.production == "v2"
    assert state.get("v1").stage is Stage.SUPERSEDED  # type: ignore[union-attr]
    # Execute
    fact = rollback(state, "v2", "quality fell")
    state = apply(state, fact)
    # Assert
    assert fact == RolledBack("v2", "v1", "quality fell")
    assert state.production == "v1"
    assert state.get("v2").stage is Stage.ROLLED_BACK  # type: ignore[union-attr]
    # rolling v1 back too leaves the base model: nothing older is restorable
    state = apply(state, rollback(state, "v1", "also bad"))
    assert state.production is None and state.traffic() == {None: 1.0}


def test_p3_a_rolled_back_predecessor_is_not_restored() -> None:
    state = to_production(RegistryState(), "v1")
    state = to_production(state, "v2")
    state = to_production(state, "v3")
    state = apply(state, rollback(state, "v3", "x"))  # back to v2
    state = apply(state, rollback(state, "v2", "x"))  # back to v1, skipping rolled-back v3
    assert state.production == "v1"


def test_rollback_fact_must_name_where_traffic_returns() -> None:
    state = to_production(RegistryState(), "v1")
    state = apply(state, promote(state, "v2"))
    with pytest.raises(IllegalTransitionError, match="traffic returns to 'v1'"):
        apply(state, RolledBack("v2", None, "x"))
    assert rollback(state, "v2", "x").to_version == "v1"


def test_p4_apply_never_mutates_its_input() -> None:
    state = to_production(RegistryState(), "v1")
    before = (state.versions, state.production_lineage, state.history)
    apply(state, promote(state, "v2"))
    assert (state.versions, state.production_lineage, state.history) == before


def test_promote_refuses_to_go_past_production() -> None:
    state = to_production(RegistryState(), "v1")
    with pytest.raises(IllegalTransitionError, match="no promotion from production"):
        promote(state, "v1")


def test_facts_round_trip_through_event_data() -> None:
    state = to_production(RegistryState(), "v1")
    state = to_production(state, "v2")
    state = apply(state, rollback(state, "v2", "guard"))
    events = [fact_to_event(f) for f in state.history]
    assert {t for t, _ in events} == {"ModelPromoted", "ModelRolledBack"}
    assert events[-1] == ("ModelRolledBack", {"version": "v2", "to_version": "v1",
                                              "reason": "guard"})  # fmt: skip
    rebuilt = replay(fact_from_event(t, d) for t, d in events)
    assert rebuilt == state
    with pytest.raises(ValueError, match="RoundStarted"):
        fact_from_event("RoundStarted", {})


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["v1", "v2", "v3"]), st.booleans()), max_size=25))
def test_any_sequence_of_commands_keeps_the_invariants(ops: list[tuple[str, bool]]) -> None:
    state = RegistryState()
    for version, is_rollback in ops:
        try:
            fact = rollback(state, version, "r") if is_rollback else promote(state, version)
        except IllegalTransitionError:
            continue
        new = apply(state, fact)
        current = state.get(version)
        frm = current.stage if current else None
        assert (frm, new.get(version).stage) in TRANSITIONS  # type: ignore[union-attr]
        state = new
        for stage in (Stage.CANARY, Stage.AB, Stage.PRODUCTION):  # P2
            assert sum(v.stage is stage for v in state.versions) <= 1
        assert sum(state.traffic().values()) == pytest.approx(1.0)
        assert all(0.0 <= share <= 1.0 for share in state.traffic().values())
    assert replay(state.history) == state


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"canary_fraction": 0.0}, "canary_fraction"), ({"ab_fraction": 1.0}, "ab_fraction"),
     ({"canary_fraction": 0.2, "ab_fraction": 0.1}, "must not exceed"),
     ({"canary_fraction": 0.5, "ab_fraction": 0.5}, "must be < 1")],
)  # fmt: skip
def test_bad_fractions_are_refused(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        PromotionConfig(**kwargs)


# --- negative-feedback-loop guard ----------------------------------------------------------
def test_guard_rolls_back_a_production_version_whose_quality_keeps_falling() -> None:
    # Prepare
    state = to_production(to_production(RegistryState(), "v1"), "v2")
    falling = [0.80, 0.79, 0.77, 0.75, 0.73, 0.71]
    # Execute
    fact = feedback_guard(state, falling)
    # Assert
    assert fact is not None
    assert (fact.version, fact.to_version) == ("v2", "v1")
    assert fact.reason.startswith("negative-feedback-loop guard: quality slope -0.0")
    assert apply(state, fact).production == "v1"


def test_guard_leaves_a_stable_version_and_an_empty_registry_alone() -> None:
    state = to_production(RegistryState(), "v1")
    assert feedback_guard(state, [0.80, 0.81, 0.79, 0.80, 0.80, 0.81]) is None
    assert feedback_guard(RegistryState(), [0.9, 0.5, 0.1, 0.0, 0.0]) is None


def test_guard_uses_the_given_baseline_and_thresholds() -> None:
    state = to_production(RegistryState(), "v1")
    flat_but_low = [0.70] * 4
    assert feedback_guard(state, flat_but_low) is None
    fact = feedback_guard(state, flat_but_low, baseline=0.80,
                          config=QualityGuardConfig(max_drop=0.1))  # fmt: skip
    assert fact is not None and "below the baseline 0.8000" in fact.reason
    assert fact.to_version is None  # nothing to restore: back to the base model
