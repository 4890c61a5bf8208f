"""The learning-rate schedule: linear warm-up, then constant, cosine or linear decay."""

from __future__ import annotations

import math


def lr_factor(step: int, warmup: int, total: int, schedule: str, time_fraction: float = 0.0) -> float:
    """Linear warm-up over `warmup` steps, then constant / cosine / linear decay to 0 at `total`.

    With a time budget, decay progress is the larger of the step and the time fraction, so the
    schedule finishes when the budget does instead of being cut off at a high learning rate.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, max((step - warmup) / max(1, total - warmup), time_fraction))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress
