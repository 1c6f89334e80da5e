"""The learning-rate schedule of a training run (``train.warmup_steps``, ``train.lr_decay``)."""

from __future__ import annotations

import math

# ``train.lr_decay``: what follows the warm-up
LR_DECAYS = ("none", "cosine")


def learning_rate(step: int, lr: float, warmup_steps: int, decay: str = "none", max_steps: int = 1) -> float:
    """The lr of optimisation step ``step`` (1-based): ``lr`` x step / warmup_steps up to warmup_steps, then
    the constant ``lr`` (``decay="none"``, the paper's) or a half cosine from ``lr`` towards 0, which it
    would reach one step after ``max_steps`` (``"cosine"``; no step is taken at lr 0). A function of the
    step alone, so a resumed run continues it exactly."""
    if warmup_steps and step < warmup_steps:
        return lr * step / warmup_steps
    if decay == "cosine":
        done = (step - warmup_steps) / (max_steps - warmup_steps + 1)
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))
    return lr
