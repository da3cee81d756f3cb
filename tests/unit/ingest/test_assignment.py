"""Keyed-hash A/B assignment (tenant_node.ingest.assignment, invariants A1-A3)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest, chisquare

from tenant_node.ingest.assignment import (
    Arm,
    arm_for_point,
    assign,
    assignment_event_id,
    assignment_point,
)

SECRET = b"s" * 32
HALF = [Arm("control", 1.0), Arm("treatment", 1.0)]


def test_a1_same_inputs_same_arm_in_another_process() -> None:
    # Prepare
    code = ("from tenant_node.ingest.assignment import Arm, assign;"
            "print(assign(b's' * 32, 'ab-1', 'user-7', [Arm('control', 1.0), "
            "Arm('treatment', 1.0)])[1])")

    # Execute
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()

    # Assert
    assert float(other) == assign(SECRET, "ab-1", "user-7", HALF)[1]


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.01])
def test_a2_split_fraction_is_honoured(fraction: float) -> None:
    # Prepare
    arms = [Arm("control", 1 - fraction), Arm("treatment", fraction)]
    n = 20_000

    # Execute
    treated = sum(assign(SECRET, "ab-split", f"u{i}", arms)[0].name == "treatment"
                  for i in range(n))

    # Assert: a two-sided exact binomial test does not reject the configured split.
    assert binomtest(treated, n, fraction).pvalue > 0.001


def test_a2_three_arms_follow_their_weights() -> None:
    # Prepare
    arms = [Arm("a", 2.0), Arm("b", 1.0), Arm("c", 1.0)]
    n = 12_000

    # Execute
    counts = {"a": 0, "b": 0, "c": 0}
    for i in range(n):
        counts[assign(SECRET, "ab-3", f"u{i}", arms)[0].name] += 1

    # Assert
    assert chisquare(list(counts.values()), [n / 2, n / 4, n / 4]).pvalue > 0.001


def test_a3_different_tests_assign_independently() -> None:
    # Prepare
    n = 10_000

    # Execute: users treated in test x and in test y (independent -> about n/4).
    both = sum(
        assign(SECRET, "x", f"u{i}", HALF)[0].name == "treatment"
        and assign(SECRET, "y", f"u{i}", HALF)[0].name == "treatment"
        for i in range(n)
    )

    # Assert
    assert binomtest(both, n, 0.25).pvalue > 0.001


def test_the_secret_changes_the_assignment() -> None:
    # Execute
    points = {assignment_point(key, "ab", "u1") for key in (b"a" * 32, b"b" * 32)}

    # Assert
    assert len(points) == 2


@settings(max_examples=200)
@given(st.floats(0.0, 1.0, exclude_max=True),
       st.lists(st.floats(0.01, 100.0), min_size=2, max_size=5))
def test_arm_intervals_cover_the_unit_interval(point: float, weights: list[float]) -> None:
    # Prepare
    arms = [Arm(f"arm{i}", w) for i, w in enumerate(weights)]
    total = sum(weights)

    # Execute
    arm = arm_for_point(point, arms)

    # Assert: the arm's interval [lo, hi) holds the point (within float rounding).
    index = arms.index(arm)
    lo = sum(weights[:index]) / total
    hi = sum(weights[: index + 1]) / total
    assert lo - 1e-12 <= point < hi + 1e-12


def test_event_id_is_deterministic_and_depends_on_the_arms() -> None:
    # Execute
    first = assignment_event_id(SECRET, "ab", "u1", HALF)
    again = assignment_event_id(SECRET, "ab", "u1", HALF)
    resplit = assignment_event_id(SECRET, "ab", "u1", [Arm("control", 9), Arm("treatment", 1)])

    # Assert
    assert first == again and first != resplit
    assert first.version == 8


@pytest.mark.parametrize(
    ("arms", "message"),
    [
        ([Arm("only", 1.0)], "at least 2 arms"),
        ([Arm("a", 1.0), Arm("a", 1.0)], "distinct"),
    ],
)
def test_bad_arm_sets_are_refused(arms: list[Arm], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        assign(SECRET, "ab", "u", arms)


@pytest.mark.parametrize("weight", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_weights_are_refused(weight: float) -> None:
    with pytest.raises(ValueError, match="weight"):
        Arm("a", weight)
