import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from losses import IdentityLoss, LossWeights, Objective, PerceptualLoss
from tests.losses.test_identity import small_arcface
from tests.losses.test_perceptual import perceptual  # noqa: F401  (module fixture)


class TinyEncoder(nn.Module):
    """The trainable side: image (B, 3, 32, 32) -> (output image (B, 3, 64, 64), w (B, 2, 4))."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Linear(3, 8)

    def forward(self, x):
        img = torch.tanh(self.conv(nn.functional.interpolate(x, scale_factor=2)))
        return img, self.head(x.mean((2, 3))).view(-1, 2, 4)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 3, 32, 32, generator=g) * 2 - 1 for _ in range(2)]


def test_paper_defaults():
    assert LossWeights() == LossWeights(l2=0.1, lpips=1.0, id=0.5, wnorm=0.003)
    with pytest.raises(ValueError):
        LossWeights(l2=-1)


def test_total_is_weighted_sum_and_gradients_reach_encoder_only(perceptual):  # noqa: F811
    identity = IdentityLoss(small_arcface(), crop=(0.0, 1.0, 0.0, 1.0))
    weights = LossWeights(l2=0.3, lpips=0.7, id=0.5, wnorm=0.01)
    objective = Objective(weights, perceptual=perceptual, identity=identity).train()
    enc = TinyEncoder()
    x, target = batch()
    out, w = enc(x)
    total, terms = objective(out, target, identity=target, w=w, w_avg=torch.zeros(4))
    assert set(terms) == {"l2", "lpips", "id", "wnorm"}
    expected = 0.3 * terms["l2"] + 0.7 * terms["lpips"] + 0.5 * terms["id"] + 0.01 * terms["wnorm"]
    torch.testing.assert_close(total, expected)
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    frozen = list(objective.parameters())
    assert frozen and all(not p.requires_grad and p.grad is None for p in frozen)
    assert not objective.perceptual.net.training and not objective.identity.embedder.training


def test_output_equal_to_target_gives_zero_image_terms(perceptual):  # noqa: F811
    identity = IdentityLoss(small_arcface(), (0.0, 1.0, 0.0, 1.0))
    objective = Objective(LossWeights(wnorm=0.0), perceptual, identity)
    _, target = batch(1)
    up = target.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # pooled back exactly to target
    total, terms = objective(up, target, identity=target)
    assert total.item() == pytest.approx(0.0, abs=1e-5)
    assert "wnorm" not in terms


def test_zero_weight_terms_are_not_computed():
    # no perceptual or identity network exists at all: the terms must be skipped, not evaluated
    objective = Objective(LossWeights(l2=1.0, lpips=0.0, id=0.0, wnorm=0.5))
    out, target = batch(2)
    w = torch.ones(2, 2, 4)
    total, terms = objective(out, target, w=w, w_avg=torch.zeros(4))
    assert set(terms) == {"l2", "wnorm"}
    torch.testing.assert_close(total, terms["l2"] + 0.5 * 8**0.5)
    with pytest.raises(ValueError, match="lpips"):
        Objective(LossWeights(l2=1.0, lpips=1.0, id=0.0, wnorm=0.0))


def test_from_config_loads_only_needed_networks():
    cfg = {
        "l2": 0.1,
        "lpips": 0.0,
        "id": 0.0,
        "wnorm": 0.003,
        "wnorm_squared": True,
        "perceptual": "alex",
        "id_network": "no_such_network",
    }
    objective = Objective.from_config(cfg)
    assert objective.perceptual is None and objective.identity is None and objective.wnorm.squared
    assert isinstance(objective.weights, LossWeights) and objective.weights.wnorm == 0.003


def test_missing_inputs_are_reported(perceptual):  # noqa: F811
    assert isinstance(perceptual, PerceptualLoss)
    objective = Objective(LossWeights(l2=1.0, lpips=0.0, id=0.0, wnorm=1.0))
    out, target = batch(3)
    with pytest.raises(ValueError, match="w_avg"):
        objective(out, target)


def test_from_config_loads_the_arcface_by_path_with_the_configured_crop(tmp_path):
    net = small_arcface(2)
    path = tmp_path / "arcface.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    cfg = {
        "l2": 0.1,
        "lpips": 0.0,
        "id": 0.5,
        "wnorm": 0.0,
        "perceptual": "alex",
        "id_network": str(path),
        "id_crop": [0.0, 1.0, 0.0, 1.0],
    }
    objective = Objective.from_config(cfg)
    assert objective.identity.crop == (0.0, 1.0, 0.0, 1.0) and objective.identity.input_size == 32
    _, target = batch(4)
    _, terms = objective(target, target, identity=target)
    assert terms["id"].item() == pytest.approx(0.0, abs=1e-6)


def test_losses_against_batch_targets_equal_forward_bitwise(perceptual):  # noqa: F811
    """A batch's targets computed once serve every output (refinement step) with forward's values."""
    identity = IdentityLoss(small_arcface(), (0.0, 1.0, 0.0, 1.0))
    objective = Objective(LossWeights(), perceptual, identity)
    enc = TinyEncoder()
    x, target = batch(2)
    targets = objective.targets(target, identity=x)
    assert targets.identity_embedding.requires_grad is False and targets.perceptual[0].grad_fn is None
    for _ in range(2):  # two outputs of the same batch
        out, w = enc(x)
        total, terms = objective(out, target, identity=x, w=w, w_avg=torch.zeros(4))
        total_t, terms_t = objective.losses(out, targets, w=w, w_avg=torch.zeros(4))
        assert torch.equal(total_t, total) and terms_t.keys() == terms.keys()
        assert all(torch.equal(terms_t[k], terms[k]) for k in terms)
        enc.conv.weight.data.add_(0.01)
    with pytest.raises(ValueError, match="identity images"):
        objective.targets(target)
