"""The learning-rate schedule: warm-up, then constant or a half cosine."""

import math

import pytest

from experiments.schedule import learning_rate


def test_warm_up_then_constant_is_the_default():
    assert [learning_rate(s, 1.0, 4) for s in range(1, 7)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert learning_rate(1, 3e-4, 0) == 3e-4


def test_cosine_falls_from_lr_after_the_warm_up_and_never_reaches_zero():
    lrs = [learning_rate(s, 1.0, 2, "cosine", max_steps=10) for s in range(1, 11)]
    assert lrs[:2] == [0.5, 1.0]  # the warm-up ramp, then the decay starts at the full lr
    assert all(a > b for a, b in zip(lrs[1:], lrs[2:])) and 0 < lrs[-1] < 0.05
    # halfway through the decay (steps 2..11 of the cosine's 9 intervals) the lr is half
    assert learning_rate(2 + 9 / 2, 1.0, 2, "cosine", max_steps=10) == pytest.approx(0.5)
    assert lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 8 / 9)))
