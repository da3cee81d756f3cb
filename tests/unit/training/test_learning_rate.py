"""The learning-rate schedule: warmup, constant / cosine / linear decay, bad input."""

from __future__ import annotations

import itertools

import pytest

from hermes_fed.training.learning_rate import learning_rate_at

# (schedule, peak, total, warmup, min_ratio, step, expected); expected values by hand:
# warmup step s gets peak * s / warmup; after it p = (s - warmup) / (total - warmup),
# cosine = min + (peak - min) (1 + cos(pi p)) / 2, linear = min + (peak - min) (1 - p).
CASES = [
    # peak 1, 10 steps, 2 of warmup, decay to 0.1
    ("cosine", 1.0, 10, 2, 0.1, 1, 0.5),  # first step: half way up
    ("cosine", 1.0, 10, 2, 0.1, 2, 1.0),  # warmup end: the peak
    ("cosine", 1.0, 10, 2, 0.1, 4, 0.1 + 0.45 * (1 + 0.7071067811865476)),  # p = 1/4
    ("cosine", 1.0, 10, 2, 0.1, 6, 0.55),  # p = 1/2: half way between peak and floor
    ("cosine", 1.0, 10, 2, 0.1, 10, 0.1),  # last step: the floor
    ("linear", 1.0, 10, 2, 0.1, 1, 0.5),
    ("linear", 1.0, 10, 2, 0.1, 2, 1.0),
    ("linear", 1.0, 10, 2, 0.1, 4, 0.775),  # 0.1 + 0.9 * 3/4
    ("linear", 1.0, 10, 2, 0.1, 6, 0.55),
    ("linear", 1.0, 10, 2, 0.1, 10, 0.1),
    ("constant", 1.0, 10, 2, 0.1, 1, 0.5),  # warmup applies to constant too
    ("constant", 1.0, 10, 2, 0.1, 2, 1.0),
    ("constant", 1.0, 10, 2, 0.1, 6, 1.0),  # min_lr_ratio is ignored
    ("constant", 1.0, 10, 2, 0.1, 10, 1.0),
    # no warmup: the first step already decays a little; to 0 at the end
    ("cosine", 1.0, 4, 0, 0.0, 1, 0.5 * (1 + 0.7071067811865476)),
    ("cosine", 1.0, 4, 0, 0.0, 2, 0.5),
    ("cosine", 1.0, 4, 0, 0.0, 4, 0.0),
    ("constant", 5e-3, 400, 0, 0.0, 1, 5e-3),  # the old behaviour
    ("constant", 5e-3, 400, 0, 0.0, 400, 5e-3),
    # the bench's shape: 400 steps, 20 of warmup, peak 5e-3
    ("cosine", 5e-3, 400, 20, 0.0, 1, 2.5e-4),
    ("cosine", 5e-3, 400, 20, 0.0, 20, 5e-3),
    ("cosine", 5e-3, 400, 20, 0.0, 210, 2.5e-3),
    ("cosine", 5e-3, 400, 20, 0.0, 400, 0.0),
    ("linear", 5e-3, 400, 20, 0.0, 305, 1.25e-3),  # p = 3/4
    # warmup longer than the run: it never reaches the peak
    ("cosine", 1.0, 3, 5, 0.0, 3, 0.6),
    # warmup exactly the run: the last step is the peak
    ("linear", 1.0, 3, 3, 0.0, 3, 1.0),
]


@pytest.mark.parametrize(("schedule", "peak", "total", "warmup", "min_ratio", "step", "expected"), CASES)
def test_learning_rate_at_matches_hand_values(
    schedule: str, peak: float, total: int, warmup: int, min_ratio: float, step: int, expected: float
) -> None:
    lr = learning_rate_at(
        step, total, peak_lr=peak, schedule=schedule, warmup_steps=warmup, min_lr_ratio=min_ratio
    )
    assert lr == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_decay_never_rises_and_stays_within_floor_and_peak(schedule: str) -> None:
    lrs = [
        learning_rate_at(s, 50, peak_lr=2.0, schedule=schedule, warmup_steps=5, min_lr_ratio=0.25)
        for s in range(5, 51)
    ]
    assert lrs[0] == 2.0 and lrs[-1] == pytest.approx(0.5)
    assert all(b <= a for a, b in itertools.pairwise(lrs))


@pytest.mark.parametrize(
    ("step", "total", "schedule", "match"),
    [
        (0, 10, "cosine", r"step must be in 1\.\.10, got 0"),
        (11, 10, "cosine", r"step must be in 1\.\.10, got 11"),
        (1, 10, "exponential", r"schedule must be one of .*got 'exponential'"),
    ],
)
def test_bad_step_or_schedule_is_named(step: int, total: int, schedule: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        learning_rate_at(step, total, peak_lr=1.0, schedule=schedule)
