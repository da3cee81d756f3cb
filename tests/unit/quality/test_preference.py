"""Preference pairs: retried-then-accepted tasks within a session."""

from __future__ import annotations

import pytest

from hermes_fed.quality.preference import (
    PreferencePair,
    SessionTrajectory,
    preference_pairs,
    task_key,
)

K = task_key("What is 2+3?")


def st_(tid: str, order: int, *, retried: bool = False, accepted: bool = False,
        key: str = K, session: str = "s1") -> SessionTrajectory:
    return SessionTrajectory(tid, session, order, key, retried, accepted)


@pytest.mark.parametrize(
    ("trajectories", "expected"),
    [
        # retried, then accepted: one pair
        ([st_("r", 1, retried=True), st_("c", 2, accepted=True)], [("r", "c")]),
        # a chain of two retries before the accepted one: two pairs with the same chosen
        ([st_("r1", 1, retried=True), st_("r2", 2, retried=True), st_("c", 3, accepted=True)],
         [("r1", "c"), ("r2", "c")]),
        # accepted BEFORE the retry: no pair (chosen must come later)
        ([st_("c", 1, accepted=True), st_("r", 2, retried=True)], []),
        # retried but never accepted
        ([st_("r", 1, retried=True), st_("x", 2)], []),
        # a different task is not a retry of this one
        ([st_("r", 1, retried=True), st_("c", 2, accepted=True, key=task_key("other"))], []),
        # a different session neither
        ([st_("r", 1, retried=True), st_("c", 2, accepted=True, session="s2")], []),
        # retried and accepted itself: it is the chosen one
        ([st_("r", 1, retried=True), st_("c", 2, retried=True, accepted=True)], [("r", "c")]),
        # each rejected pairs with the first later acceptance only
        ([st_("r", 1, retried=True), st_("c1", 2, accepted=True), st_("c2", 3, accepted=True)],
         [("r", "c1")]),
    ],
)
def test_preference_pairs(trajectories: list[SessionTrajectory],
                          expected: list[tuple[str, str]]) -> None:
    # Execute (input order must not matter: reversed)
    pairs = preference_pairs(reversed(trajectories))
    # Assert
    assert [(p.rejected_id, p.chosen_id) for p in pairs] == expected
    assert all(isinstance(p, PreferencePair) for p in pairs)


def test_task_key_ignores_formatting_and_keeps_no_text() -> None:
    assert task_key("What is  2+3?") == task_key("what is 2+3?")
    assert "2+3" not in task_key("What is 2+3?") and len(K) == 32
