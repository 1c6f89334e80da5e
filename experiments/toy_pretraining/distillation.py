"""The generator distillation's losses: multi-scale and image-gradient L1 with the fine parts
weighted, L1 on the skip images, PSNR, and the optional non-saturating GAN term."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from data.toyfaces.render import L_BROW, L_EYE, L_LIP, MOUTH, NOSE, R_BROW, R_EYE, U_LIP


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical finite differences of (B, C, H, W)."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


FINE_PARTS = (L_EYE, R_EYE, L_BROW, R_BROW, NOSE, MOUTH, U_LIP, L_LIP)


def part_weights(labels: torch.Tensor, part_weight: float) -> torch.Tensor:
    """(B, 1, H, W) per-pixel loss weights from label maps (B, H, W): 1 + part_weight on FINE_PARTS, else 1."""
    fine = torch.isin(labels, torch.tensor(FINE_PARTS, device=labels.device))
    return (1.0 + part_weight * fine.float())[:, None]


def distillation_loss(
    fake: torch.Tensor, real: torch.Tensor, gradient_weight: float = 1.0, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Multi-scale L1 (full, 1/2, 1/4) plus L1 between image gradients, which keeps part edges sharp.

    ``weight`` (B, 1, H, W) weighs each pixel's error (area-pooled with the images; a gradient takes the
    larger weight of its two pixels); None weighs all pixels 1.
    """
    loss = fake.new_zeros(())
    weight = torch.ones_like(fake[:, :1]) if weight is None else weight
    f, r, wt = fake, real, weight
    for _ in range(3):
        loss = loss + (wt * (f - r).abs()).mean()
        f, r, wt = F.avg_pool2d(f, 2), F.avg_pool2d(r, 2), F.avg_pool2d(wt, 2)
    pair_weights = (
        torch.maximum(weight[..., :, 1:], weight[..., :, :-1]),
        torch.maximum(weight[..., 1:, :], weight[..., :-1, :]),
    )
    for gf, gr, wt in zip(image_gradients(fake), image_gradients(real), pair_weights):
        loss = loss + gradient_weight * (wt * (gf - gr).abs()).mean()
    return loss


def synthesis_loss(
    skips: dict[int, torch.Tensor], real: torch.Tensor, gradient_weight: float = 1.0, weight: torch.Tensor | None = None
):
    """``distillation_loss`` (with ``weight``) at full size plus L1 of each intermediate skip image
    (8 .. size/2) to the area-downsampled target, which teaches the coarse layers directly."""
    size = real.shape[-1]
    loss = distillation_loss(skips[size], real, gradient_weight, weight)
    for res, img in skips.items():
        if 8 <= res < size:
            loss = loss + (img - F.adaptive_avg_pool2d(real, res)).abs().mean()
    return loss


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (B,) in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = ((x.clamp(-1, 1) - y) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp(min=1e-10))


def discriminator_step(d, d_opt, real: torch.Tensor, fake: torch.Tensor, r1_gamma: float, r1_interval: int) -> dict:
    """One non-saturating logistic D update on real / fake (B, 3, S, S) in [-1, 1]. With ``r1_interval``
    > 0 the lazy R1 penalty gamma / 2 * |dD(real)/dreal|^2, times the interval (StyleGAN2's lazy
    regularisation), is added. Returns the logs."""
    r1 = r1_interval > 0
    real = real.detach().requires_grad_(r1)
    real_logit, fake_logit = d(real), d(fake.detach())
    loss = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
    log = {"d_loss": loss.item(), "d_real": real_logit.mean().item(), "d_fake": fake_logit.mean().item()}
    if r1:
        (grad,) = torch.autograd.grad(real_logit.sum(), real, create_graph=True)
        penalty = grad.pow(2).flatten(1).sum(1).mean()
        loss = loss + r1_gamma / 2 * penalty * r1_interval
        log["r1"] = penalty.item()
    d_opt.zero_grad(set_to_none=True)
    loss.backward()
    d_opt.step()
    return log
