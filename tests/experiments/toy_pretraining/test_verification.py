"""LFW-style verification accuracy."""

import torch

from experiments.toy_pretraining.verification import verification_accuracy


def test_verification_accuracy():
    same, diff = torch.linspace(0.6, 0.9, 50), torch.linspace(-0.2, 0.3, 50)
    assert verification_accuracy(same, diff) == 1.0
    noise = torch.rand(200, generator=torch.Generator().manual_seed(0))
    assert 0.3 < verification_accuracy(noise[:100], noise[100:]) < 0.7
