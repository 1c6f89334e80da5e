"""Pixel-wise L2 between the generated face and the real face x_hat_c of the contour (eq. 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ops.resize import resize_to


class ReconstructionL2(nn.Module):
    """Mean squared error, averaged over batch, channels and pixels.

    forward(output (B, 3, H, W), target (B, 3, R, R)), both in [-1, 1] -> scalar; the output is first
    brought to the target's resolution R (the loss resolution) with ``ops.resize``'s ``area`` kernel (pSp's face pool).
    """

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(resize_to(output, target.shape[-2:], "area"), target)
