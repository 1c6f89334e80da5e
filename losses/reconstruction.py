"""Pixel-wise L2 between the generated face and the real face x_hat_c of the contour (eq. 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def resize_to(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, *size) (an int means square); the input itself when already that size.

    Downsizing averages (pSp's ``AdaptiveAvgPool2d((256, 256))`` face pool, exact box filter for the
    1024 -> 256 case); upsizing is bilinear, since pooling to a larger grid would only repeat pixels.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ReconstructionL2(nn.Module):
    """Mean squared error, averaged over batch, channels and pixels.

    forward(output (B, 3, H, W), target (B, 3, R, R)), both in [-1, 1] -> scalar; the output is first
    brought to the target's resolution R (the loss resolution) with :func:`resize_to`.
    """

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(resize_to(output, target.shape[-2:]), target)
