import pytest
import torch

from losses import ReconstructionL2


def test_identical_images_give_zero():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert ReconstructionL2()(x, x.clone()).item() == 0.0


def test_known_value_and_mean_reduction():
    out = torch.zeros(2, 3, 8, 8)
    target = torch.zeros(2, 3, 8, 8)
    target[0] = 0.5  # squared error 0.25 on half the batch
    assert ReconstructionL2()(out, target).item() == pytest.approx(0.125)


def test_output_is_brought_to_the_loss_resolution():
    # a 2x2 block pattern averages exactly to the 4x smaller target
    target = torch.rand(1, 3, 4, 4) * 2 - 1
    output = target.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    assert ReconstructionL2()(output, target).item() == pytest.approx(0.0, abs=1e-12)


def test_gradient_reaches_output():
    out = torch.zeros(1, 3, 8, 8, requires_grad=True)
    ReconstructionL2()(out, torch.ones(1, 3, 4, 4)).backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
