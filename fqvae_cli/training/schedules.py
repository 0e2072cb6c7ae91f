"""Schedules as pure functions of the step, so a resumed run needs no scheduler state.

Learning rate: cosine annealing from lr to lr_min over the first `anneal_steps`, then held at lr_min
(the authors' PyTorch scheduler is periodic and climbs back after the span; the paper says annealed
"over the first 50K iterations", which is what this does).
Gumbel temperature: tau = exp(-decay * t) with no floor (paper Appendix A)."""

from __future__ import annotations

import math


def cosine_lr(step: int, lr: float, lr_min: float, anneal_steps: int) -> float:
    if step >= anneal_steps:
        return lr_min
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * step / anneal_steps))


def temperature(step: int, decay: float) -> float:
    return math.exp(-decay * step)
