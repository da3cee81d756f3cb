"""The learning-rate schedule: warmup, constant / cosine / linear decay, bad input."""

from __future__ import annotations

import itertools

import pytest

from hermes_fed.training.learning_rate import learning_rate_at

# (schedule, peak, total, warmup, min_ratio, step, expected); expected values by hand:
# warmup step s gets peak * s / warmup; after it p = (s - warmup - 1) / (total - warmup),
# cosine = min + (peak - min) (1 + cos(pi p)) / 2, linear = min + (peak - min) (1 - p).
# cos(pi / 4) = 0.70710678..., cos(7 pi / 8) = -0.92387953...
CASES = [
    # peak 1, 10 steps, 2 of warmup, decay towards 0.1; p = (s - 3) / 8
    ("cosine", 1.0, 10, 2, 0.1, 1, 0.5),  # first step: half way up
    ("cosine", 1.0, 10, 2, 0.1, 2, 1.0),  # warmup end: the peak
    ("cosine", 1.0, 10, 2, 0.1, 3, 1.0),  # first decay step: still the peak (p = 0)
    ("cosine", 1.0, 10, 2, 0.1, 5, 0.1 + 0.45 * (1 + 0.7071067811865476)),  # p = 1/4
    ("cosine", 1.0, 10, 2, 0.1, 7, 0.55),  # p = 1/2: half way between peak and floor
    ("cosine", 1.0, 10, 2, 0.1, 10, 0.1 + 0.45 * (1 - 0.9238795325112867)),  # last: p = 7/8
    ("linear", 1.0, 10, 2, 0.1, 1, 0.5),
    ("linear", 1.0, 10, 2, 0.1, 2, 1.0),
    ("linear", 1.0, 10, 2, 0.1, 5, 0.775),  # 0.1 + 0.9 * 3/4
    ("linear", 1.0, 10, 2, 0.1, 7, 0.55),
    ("linear", 1.0, 10, 2, 0.1, 10, 0.2125),  # 0.1 + 0.9 * 1/8
    ("constant", 1.0, 10, 2, 0.1, 1, 0.5),  # warmup applies to constant too
    ("constant", 1.0, 10, 2, 0.1, 2, 1.0),
    ("constant", 1.0, 10, 2, 0.1, 7, 1.0),  # min_lr_ratio is ignored
    ("constant", 1.0, 10, 2, 0.1, 10, 1.0),
    # no warmup, decay towards 0: p = (s - 1) / 4, the first step at the peak
    ("cosine", 1.0, 4, 0, 0.0, 1, 1.0),
    ("cosine", 1.0, 4, 0, 0.0, 2, 0.5 * (1 + 0.7071067811865476)),
    ("cosine", 1.0, 4, 0, 0.0, 3, 0.5),
    ("cosine", 1.0, 4, 0, 0.0, 4, 0.5 * (1 - 0.7071067811865476)),  # never 0 within the run
    ("linear", 1.0, 4, 0, 0.0, 4, 0.25),
    ("cosine", 1.0, 1, 0, 0.0, 1, 1.0),  # a one-step run trains at the peak, not at 0
    ("constant", 5e-3, 400, 0, 0.0, 1, 5e-3),  # the old behaviour
    ("constant", 5e-3, 400, 0, 0.0, 400, 5e-3),
    # the bench's shape: 400 steps, 20 of warmup, peak 5e-3; p = (s - 21) / 380
    ("cosine", 5e-3, 400, 20, 0.0, 1, 2.5e-4),
    ("cosine", 5e-3, 400, 20, 0.0, 20, 5e-3),
    ("cosine", 5e-3, 400, 20, 0.0, 211, 2.5e-3),
    ("linear", 5e-3, 400, 20, 0.0, 306, 1.25e-3),  # p = 3/4
    ("linear", 5e-3, 400, 20, 0.0, 400, 5e-3 / 380),  # p = 379/380
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
    assert lrs[0] == lrs[1] == 2.0 and 0.5 < lrs[-1] < 0.6
    assert all(b <= a for a, b in itertools.pairwise(lrs))


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_decay_without_warmup_matches_torch_schedulers(schedule: str) -> None:
    # Prepare: torch's own schedulers as the independent reference (the rate each step uses)
    import torch

    total, peak, ratio = 37, 3e-3, 0.2
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    scheduler: torch.optim.lr_scheduler.LRScheduler
    if schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=ratio * peak)
    else:
        scheduler = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=1.0, end_factor=ratio, total_iters=total
        )
    expected = []
    for _ in range(total):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # Execute
    ours = [
        learning_rate_at(s, total, peak_lr=peak, schedule=schedule, min_lr_ratio=ratio)
        for s in range(1, total + 1)
    ]
    # Assert
    assert ours == pytest.approx(expected, rel=1e-9)


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
