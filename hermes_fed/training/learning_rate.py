"""The learning rate of an optimizer step: linear warmup, then constant, cosine or linear decay.

A pure function of the step number, so a run resumed from a checkpoint sets exactly the
learning rates an uninterrupted run sets (trainer invariant T5). Cosine decay follows
Loshchilov & Hutter, SGDR (arXiv 1608.03983) without restarts; warmup follows Goyal et al.
(arXiv 1706.02677).
"""

from __future__ import annotations

import math

LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine", "linear")


def learning_rate_at(
    step: int,
    total_steps: int,
    *,
    peak_lr: float,
    schedule: str,
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
) -> float:
    """The learning rate of optimizer step ``step`` (1-based) of a ``total_steps`` run.

    Steps ``1 .. warmup_steps`` rise linearly to the peak (step ``s`` gets
    ``peak_lr * s / warmup_steps``, so the first step is not wasted at 0). Later steps have
    progress ``p = (s - warmup_steps - 1) / (total_steps - warmup_steps)`` in ``[0, 1)``:

    - ``constant``: ``peak_lr``;
    - ``cosine``: ``min + (peak - min) * (1 + cos(pi p)) / 2``;
    - ``linear``: ``min + (peak - min) * (1 - p)``;

    with ``min = min_lr_ratio * peak_lr``. The first step after warmup trains at the peak
    and the floor would be reached one step after the last (PyTorch's ``CosineAnnealingLR``
    with ``T_max = total_steps - warmup_steps``), so no step trains at 0 even with
    ``min_lr_ratio = 0``, and a one-step run trains at the peak.

    Raises
    ------
    ValueError
        For a step outside ``1 .. total_steps`` or an unknown schedule.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"learning_rate_at: schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    if not 1 <= step <= total_steps:
        raise ValueError(f"learning_rate_at: step must be in 1..{total_steps}, got {step!r}")
    if step <= warmup_steps:
        return peak_lr * step / warmup_steps
    if schedule == "constant":
        return peak_lr
    progress = (step - warmup_steps - 1) / (total_steps - warmup_steps)
    floor = min_lr_ratio * peak_lr
    if schedule == "cosine":
        return floor + (peak_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return floor + (peak_lr - floor) * (1.0 - progress)
