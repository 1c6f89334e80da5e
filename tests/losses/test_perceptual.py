import warnings

import lpips
import pytest
import torch

from losses import PerceptualLoss


@pytest.fixture(scope="module")
def perceptual():
    # the real lpips class with its shipped v0.1 linear layers on a random-weight AlexNet trunk
    # (pnet_rand=True), which needs no download
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's 'pretrained' deprecation notice
        net = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    return PerceptualLoss(net)


def test_identical_images_give_zero_and_different_positive(perceptual):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert perceptual(x, x.clone()).item() == 0.0
    assert perceptual(x, x.flip(-1)).item() > 1e-4


def test_output_resized_to_target(perceptual):
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    output = target.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert perceptual(output, target).item() == pytest.approx(0.0, abs=1e-6)


def test_frozen_network_and_gradient_to_input(perceptual):
    perceptual.train()
    assert not perceptual.net.training
    x = torch.zeros(1, 3, 32, 32, requires_grad=True)
    perceptual(torch.tanh(x + 0.3), torch.rand(1, 3, 32, 32) * 2 - 1).backward()
    assert x.grad.abs().sum() > 0
    params = list(perceptual.parameters())
    assert params and all(not p.requires_grad and p.grad is None for p in params)


def test_toy_backbone_goes_through_lpips_with_a_frozen_trunk():
    from tests.losses.test_identity import small_arcface

    loss = PerceptualLoss.from_backbone("irse", network=small_arcface())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert isinstance(loss.net, lpips.LPIPS)
    assert loss(x, x.clone()).item() == 0.0 and loss(x, x.flip(-1)).item() > 0
    assert all(not p.requires_grad for p in loss.parameters()) and not loss.train().net.training


def test_alex_backbone_offline_stops_with_the_registry_message(tmp_path, monkeypatch):
    from models.weights import MissingWeightsError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        PerceptualLoss.from_backbone("alex")


@pytest.mark.parametrize("backbone", ["alex", "irse"])
def test_distance_to_precomputed_features_is_lpips_bitwise(perceptual, backbone):
    """features() once + distance() per output reproduces lpips.LPIPS.forward exactly (learned linear
    layers for alex, channel sums for an IR-SE trunk), with the same gradient."""
    from tests.losses.test_identity import small_arcface

    loss = perceptual if backbone == "alex" else PerceptualLoss.from_backbone("irse", network=small_arcface())
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(2, 3, 32, 32, generator=g) * 2 - 1).requires_grad_()
    target = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    expected = loss.net(x, target).mean()
    (expected_grad,) = torch.autograd.grad(expected, x)
    with torch.no_grad():
        features = loss.features(target)
    got = loss.distance(x, features)
    (got_grad,) = torch.autograd.grad(got, x)
    assert torch.equal(got, expected) and torch.equal(got_grad, expected_grad)
    assert torch.equal(loss(x, target), expected)
