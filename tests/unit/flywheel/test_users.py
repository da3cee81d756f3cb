"""Simulated users: feedback follows the outcome with noise, as catalog session events."""

from __future__ import annotations

import random

import pytest
from scipy.stats import binomtest

from examples.flywheel.users import Feedback, UserModel
from hermes_fed.events import DEFAULT_CATALOG
from hermes_fed.quality.scoring import implicit_score
from hermes_fed.quality.signals import fold_signals

N = 4000


def _draw(correct: bool, broken: bool, seed: int = 0) -> list[Feedback]:
    rng = random.Random(seed)
    model = UserModel()
    return [model.react(correct, broken, rng) for _ in range(N)]


@pytest.mark.parametrize(("correct", "broken", "attribute", "expected"), [
    (True, False, "accepted", UserModel().accept_if_correct),
    (True, False, "continued", UserModel().continue_if_correct),
    (True, False, "retry", UserModel().retry_if_correct),
    (False, False, "accepted", UserModel().accept_if_wrong),
    (False, False, "error", UserModel().error_if_wrong),
    (False, True, "error", UserModel().error_if_broken),
    (False, True, "continued", UserModel().continue_if_wrong),
    (False, True, "retry", (1 - UserModel().accept_if_wrong) * UserModel().retry_if_wrong),
])
def test_feedback_rates_match_the_model(correct: bool, broken: bool, attribute: str,
                                        expected: float) -> None:
    # Execute
    draws = _draw(correct, broken)
    hits = sum(bool(getattr(f, attribute)) for f in draws)
    # Assert: a two-sided exact binomial test at 0.1% would reject a wrong rate
    assert binomtest(hits, N, expected).pvalue > 1e-3, (attribute, hits / N, expected)


def test_feedback_follows_outcome_in_implicit_score() -> None:
    # Prepare
    right, wrong = _draw(True, False, 1), _draw(False, True, 2)

    def mean_score(draws: list[Feedback]) -> float:
        scores = []
        for i, f in enumerate(draws):
            tid = f"t{i}"
            events = [("TrajectoryRecorded", {"trajectory_id": tid}), *f.events(tid)]
            scores.append(implicit_score(fold_signals(events)[tid]).score)
        return sum(scores) / len(scores)

    # Execute
    good, bad = mean_score(right), mean_score(wrong)
    # Assert
    assert good > 0.8
    assert bad < 0.3
    assert good - bad > 0.5


def test_edit_ratio_only_without_accept_or_retry_and_in_range() -> None:
    # Execute
    draws = _draw(False, False, 3)
    edits = [f for f in draws if f.edit_ratio is not None]
    # Assert
    assert edits
    assert all(0.3 <= f.edit_ratio <= 1.0 and not f.accepted and not f.retry for f in edits)  # type: ignore[operator]


def test_last_attempt_never_retries() -> None:
    # Prepare
    rng, model = random.Random(4), UserModel()
    # Execute
    draws = [model.react(False, True, rng, may_retry=False) for _ in range(500)]
    # Assert
    assert not any(f.retry for f in draws)


def test_feedback_events_validate_against_the_catalog() -> None:
    # Prepare
    feedback = Feedback(accepted=True, retry=True, edit_ratio=0.5, error=True, continued=True)
    # Execute
    events = feedback.events("t-1")
    # Assert
    assert [t for t, _ in events] == ["ErrorReported", "OutputEdited", "RetryRequested",
                                      "OutputAccepted", "SessionContinued"]
    for event_type, data in events:
        DEFAULT_CATALOG.schema(event_type).validate(data)


@pytest.mark.parametrize("field", ["accept_if_correct", "retry_if_wrong", "error_if_broken"])
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_user_model_refuses_non_probabilities(field: str, value: float) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=f"UserModel.{field}.*{value}"):
        UserModel(**{field: value})
