"""Implicit feedback: the fold's edge cases and the DESIGN.md §5 formula, term by term."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hermes_fed.quality.config import CombineWeights, ImplicitWeights
from hermes_fed.quality.scoring import (
    combined_score,
    combined_value,
    implicit_score,
    implicit_value,
)
from hermes_fed.quality.signals import (
    FEEDBACK_TYPES,
    TrajectorySignals,
    apply_event,
    apply_event_to_row,
    fold_signals,
    orphans,
)

Ev = tuple[str, dict[str, Any]]


def rec(t: str) -> Ev:
    return ("TrajectoryRecorded", {"trajectory_id": t, "task": "x", "task_type": "a",
                                   "messages": [], "tools": [], "final_response": "y"})


def ev(kind: str, t: str, **data: Any) -> Ev:
    return (kind, {"trajectory_id": t, **data})


@pytest.mark.parametrize(
    ("signals", "expected"),
    [
        # by hand: 0.5 - 0.3 (not accepted) + 0.1 (no retry) = 0.3
        (TrajectorySignals("t", recorded=True), 0.3),
        # 0.5 + 0.3 + 0.1 + 0.1 (continued) = 1.0
        (TrajectorySignals("t", True, accepted=True, continued=True), 1.0),
        # 0.5 + 0.3 (accepted) + 0 (2 retries: neither bonus nor penalty) = 0.8
        (TrajectorySignals("t", True, accepted=True, retries=2), 0.8),
        # 0.5 + 0.3 - 0.2 (3 retries) = 0.6
        (TrajectorySignals("t", True, accepted=True, retries=3), 0.6),
        # 0.5 + 0.3 + 0.1 - 0.3 * 0.5 = 0.75
        (TrajectorySignals("t", True, accepted=True, edits=2, edit_ratio=0.5), 0.75),
        # 0.5 - 0.3 + 0.1 - 0.4 (error once, however many reports) = -0.1
        (TrajectorySignals("t", True, errors=4), -0.1),
        # the floor: 0.5 - 0.3 - 0.2 - 0.3 - 0.4 = -0.7
        (TrajectorySignals("t", True, retries=5, edits=1, edit_ratio=1.0, errors=1), -0.7),
    ],
)
def test_implicit_score_matches_design_formula(signals: TrajectorySignals,
                                               expected: float) -> None:
    # Execute
    score = implicit_score(signals)
    # Assert
    assert score.score == pytest.approx(expected)
    assert sum(t.value for t in score.terms) == pytest.approx(score.raw)


def test_implicit_score_is_clamped_and_explains_itself() -> None:
    # Prepare: weights that overshoot 1
    weights = ImplicitWeights(base=0.9, accepted=0.9, no_retry=0.5)
    # Execute
    score = implicit_score(TrajectorySignals("t", True, accepted=True), weights)
    # Assert
    assert score.raw == pytest.approx(2.3)
    assert score.score == 1.0 and score.clamped
    assert "accepted +0.900" in score.explain() and "clamped" in score.explain()


def test_several_edits_the_largest_ratio_counts() -> None:
    # Prepare: a large rewrite followed by a small touch-up
    events = [rec("t"), ev("OutputEdited", "t", edit_ratio=0.8),
              ev("OutputEdited", "t", edit_ratio=0.1)]
    # Execute
    signals = fold_signals(events)["t"]
    # Assert
    assert signals.edits == 2 and signals.edit_ratio == 0.8


@pytest.mark.parametrize(("ratio", "kept"), [(-0.5, 0.0), (1.7, 1.0), (float("nan"), 1.0)])
def test_edit_ratio_is_clamped(ratio: float, kept: float) -> None:
    signals = apply_event(TrajectorySignals("t"), "OutputEdited", {"edit_ratio": ratio})
    assert signals.edit_ratio == kept


def test_acceptance_after_retries_keeps_both() -> None:
    events = [rec("t")] + [ev("RetryRequested", "t")] * 3 + [ev("OutputAccepted", "t")]
    signals = fold_signals(events)["t"]
    assert signals.accepted and signals.retries == 3
    assert implicit_score(signals).score == pytest.approx(0.6)


def test_feedback_for_unknown_trajectory_is_an_orphan_not_a_crash() -> None:
    # Prepare: feedback naming a trajectory that was never recorded, plus junk
    events = [rec("a"), ev("OutputAccepted", "ghost"), ("SessionEnded", {"reason": ""}),
              ("OutputAccepted", {"trajectory_id": 7}), ("Unknown", {"trajectory_id": "a"})]
    # Execute
    folded = fold_signals(events)
    # Assert
    assert orphans(folded) == ["ghost"]
    assert folded["a"].recorded and not folded["a"].accepted


def test_out_of_order_events_give_the_same_signals() -> None:
    # Prepare
    events = [rec("t"), ev("RetryRequested", "t"), ev("OutputEdited", "t", edit_ratio=0.3),
              ev("OutputEdited", "t", edit_ratio=0.6), ev("SessionContinued", "t"),
              ev("ErrorReported", "t", reason="x"), ev("OutputAccepted", "t")]
    reference = fold_signals(events)
    # Execute / Assert: every permutation (feedback before the recording included)
    for perm in itertools.permutations(events):
        assert fold_signals(perm) == reference


def test_several_trajectories_per_session_are_independent() -> None:
    events = [rec("t1"), rec("t2"), ev("RetryRequested", "t1"), ev("OutputAccepted", "t2"),
              ev("SessionContinued", "t2")]
    folded = fold_signals(events)
    assert folded["t1"] == TrajectorySignals("t1", recorded=True, retries=1)
    assert folded["t2"] == TrajectorySignals("t2", recorded=True, accepted=True, continued=True)


_kinds = st.sampled_from(["TrajectoryRecorded", "OutputAccepted", "RetryRequested",
                          "OutputEdited", "SessionContinued", "ErrorReported"])
_events = st.lists(st.tuples(_kinds, st.floats(0, 1)), max_size=12)


@given(_events, _events)
def test_signals_merge_is_the_fold_of_the_concatenation(left: list[tuple[str, float]],
                                                        right: list[tuple[str, float]]) -> None:
    def fold(items: list[tuple[str, float]]) -> TrajectorySignals:
        s = TrajectorySignals("t")
        for kind, ratio in items:
            s = apply_event(s, kind, {"trajectory_id": "t", "edit_ratio": ratio})
        return s

    assert fold(left) + fold(right) == fold(left + right)
    assert -1.0 <= implicit_score(fold(left + right)).score <= 1.0


def test_merge_refuses_different_trajectories() -> None:
    with pytest.raises(ValueError, match="cannot merge"):
        TrajectorySignals("a") + TrajectorySignals("b")


@pytest.mark.parametrize(
    ("implicit", "judges", "human", "expected", "source"),
    [
        (0.8, {}, None, 0.8, "implicit"),
        (0.8, {"rules": 1.0, "agreement": 0.5}, None, 0.6 * 0.8 + 0.4 * 0.75, "fused"),
        (0.8, {"rules": 0.0}, -0.5, -0.5, "human"),
        (0.8, {"rules": 0.0}, 3.0, 1.0, "human"),
    ],
)
def test_combined_score(implicit: float, judges: dict[str, float], human: float | None,
                        expected: float, source: str) -> None:
    result = combined_score(implicit, judges, human)
    assert result.score == pytest.approx(expected)
    assert result.source == source


def test_combined_score_without_human_priority_ignores_label() -> None:
    weights = CombineWeights(implicit=1.0, judges=1.0, human_wins=False)
    result = combined_score(0.2, {"rules": 1.0}, human=1.0, weights=weights)
    assert result.score == pytest.approx(0.6) and result.source == "fused"


@given(st.booleans(), st.integers(0, 6), st.integers(0, 3), st.floats(0, 1), st.booleans(),
       st.integers(0, 3), st.floats(-1, 1), st.one_of(st.none(), st.floats(0, 1)),
       st.one_of(st.none(), st.floats(-1, 1)), st.booleans(), st.booleans(), st.booleans())
def test_hot_path_values_equal_the_explained_scores(
        accepted: bool, retries: int, edits: int, ratio: float, continued: bool, errors: int,
        implicit: float, judge_mean: float | None, human: float | None,
        human_wins: bool, rejected: bool, tool_error: bool) -> None:
    # Prepare
    signals = TrajectorySignals("t", True, accepted, retries, edits, ratio if edits else 0.0,
                                continued, errors)
    weights = CombineWeights(human_wins=human_wins)
    judges = None if judge_mean is None else {"mean": judge_mean}
    # Execute / Assert
    assert implicit_value(signals, ImplicitWeights()) == implicit_score(signals).score
    assert combined_value(implicit, judge_mean, human, weights) == combined_score(
        implicit, judges, human, weights).score
    assert combined_value(implicit, judge_mean, human, weights, rejected, tool_error) == \
        combined_score(implicit, judges, human, weights, rejected=rejected,
                       tool_error=tool_error).score


SIGNAL_FIELDS = ("trajectory_id", "recorded", "accepted", "retries", "edits", "edit_ratio",
                 "continued", "errors")


@given(st.builds(TrajectorySignals, st.just("t"), st.booleans(), st.booleans(),
                 st.integers(0, 5), st.integers(0, 3), st.floats(0, 1), st.booleans(),
                 st.integers(0, 3)),
       st.sampled_from(sorted({*FEEDBACK_TYPES, "TrajectoryRecorded", "SessionEnded"})),
       st.one_of(st.none(), st.floats(allow_nan=True), st.integers(-3, 3)))
def test_row_update_equals_apply_event(signals: TrajectorySignals, kind: str,
                                       ratio: float | None) -> None:
    # Prepare: a row holding the signals among other columns
    data: dict[str, Any] = {"trajectory_id": "t"}
    if ratio is not None:
        data["edit_ratio"] = ratio
    row: dict[str, Any] = {f: getattr(signals, f) for f in SIGNAL_FIELDS}
    row["judge_score"] = 0.5
    # Execute
    apply_event_to_row(row, kind, data)
    expected = apply_event(signals, kind, data)
    # Assert: the same values, NaN-safe, nothing else touched
    assert repr([row[f] for f in SIGNAL_FIELDS]) == repr(
        [getattr(expected, f) for f in SIGNAL_FIELDS])
    assert row["judge_score"] == 0.5 and len(row) == len(SIGNAL_FIELDS) + 1
