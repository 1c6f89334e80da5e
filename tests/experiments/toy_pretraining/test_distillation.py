"""The distillation losses: multi-scale and gradient L1, PSNR, part weights and the discriminator step."""

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from experiments.toy_pretraining.distillation import discriminator_step, distillation_loss, part_weights, psnr
from experiments.toy_pretraining.generator import build_discriminator, generator_batch
from tests.experiments.toy_pretraining.test_generator import TINY_G


def test_distillation_loss_and_psnr():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert distillation_loss(x, x).item() == 0.0
    shifted = x.roll(1, -1)
    assert distillation_loss(shifted, x) > distillation_loss(x * 0.99, x)
    assert torch.isclose(
        psnr(x - 0.02, x), torch.tensor(10 * np.log10(4 / 0.02**2), dtype=torch.float32), atol=0.2
    ).all()


def test_part_weights_make_an_uncertain_small_part_worth_drawing():
    """The fitted constant of a pixel that is an eye in 30% of the targets: skin under plain L1 (the
    median), the eye once the parts weigh 1 + 4 (drawn where their odds exceed 1 / 5)."""
    from data.toyfaces.render import L_EYE, SKIN

    n = 20
    real = torch.full((n, 3, 8, 8), 0.6)
    labels = torch.full((n, 8, 8), SKIN)
    real[:6, :, 3:5, 3:5], labels[:6, 3:5, 3:5] = -0.9, L_EYE  # 6 of 20 targets have the eye
    weight = part_weights(labels, 4.0)
    assert weight.shape == (n, 1, 8, 8) and weight.unique().tolist() == [1.0, 5.0]
    assert torch.equal(part_weights(labels, 0.0), torch.ones(n, 1, 8, 8))
    assert distillation_loss(real * 0.9, real, weight=torch.ones(n, 1, 8, 8)) == distillation_loss(real * 0.9, real)
    fitted = {}
    for name, w in (("plain", None), ("weighted", weight)):
        x = torch.zeros(1, 3, 8, 8, requires_grad=True)
        opt = torch.optim.Adam([x], lr=0.05)
        for _ in range(300):
            loss = distillation_loss(x.expand(n, -1, -1, -1), real, weight=w)
            opt.zero_grad()
            loss.backward()
            opt.step()
        fitted[name] = x.detach()[0, :, 3:5, 3:5].mean().item()
    assert fitted["plain"] > 0.3 and fitted["weighted"] < -0.5, fitted


def test_discriminator_step_separates_real_from_fake_and_adds_lazy_r1():
    torch.manual_seed(0)
    d = build_discriminator(TINY_G)
    opt = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.0, 0.99))
    _, real, _ = generator_batch(replace(TINY_G, batch_size=8), torch.Generator().manual_seed(1))
    fake = F.avg_pool2d(real, 3, 1, 1)  # blurred reals: what an underfit distillation draws
    logs = [discriminator_step(d, opt, real, fake, r1_gamma=0.1, r1_interval=0) for _ in range(30)]
    assert logs[-1]["d_loss"] < logs[0]["d_loss"] and logs[-1]["d_real"] > logs[-1]["d_fake"]
    assert "r1" not in logs[-1]
    before = {k: v.clone() for k, v in d.state_dict().items()}
    with_r1 = discriminator_step(d, opt, real, fake, r1_gamma=0.1, r1_interval=4)
    assert with_r1["r1"] > 0 and any(not torch.equal(before[k], v) for k, v in d.state_dict().items())
