import pytest
import torch

from losses import PSP_CROP, IdentityLoss, crop_fraction
from models.irse import Backbone

SMALL = dict(input_size=32, stage_channels=(8, 16, 24, 32), stage_units=(1, 1, 2, 1), embedding_dim=16)


def small_arcface(seed: int = 0) -> Backbone:
    """A random-weight IR-SE ArcFace at 32x32 (fast); BN running stats perturbed so eval is non-trivial."""
    torch.manual_seed(seed)
    net = Backbone(**SMALL)
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_psp_crop_at_256():
    x = torch.randn(1, 1, 256, 256)
    assert torch.equal(crop_fraction(x, PSP_CROP), x[:, :, 35:223, 32:220])
    with pytest.raises(ValueError):
        crop_fraction(x, (0.5, 0.4, 0.0, 1.0))


def test_image_with_itself_gives_zero_and_different_faces_positive():
    loss = IdentityLoss(small_arcface(), crop=(0.0, 1.0, 0.0, 1.0))
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    assert loss(x, x.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(x, x.roll(1, dims=0)).item() > 1e-3


def test_gradient_reaches_output_not_arcface():
    loss = IdentityLoss(small_arcface(), crop=PSP_CROP)
    loss.train()
    assert not loss.embedder.training
    x = torch.zeros(2, 3, 64, 64, requires_grad=True)
    loss(torch.tanh(x + torch.randn(2, 3, 64, 64)), torch.rand(2, 3, 64, 64) * 2 - 1).backward()
    assert x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in loss.parameters())
