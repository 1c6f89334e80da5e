"""W-norm loss L_w = ||w - w_avg|| (eq. 5): keeps the encoder's W+ codes near the average latent."""

from __future__ import annotations

import torch
from torch import nn


class WNormLoss(nn.Module):
    """Frobenius norm of (w - w_avg) over (n_latent, style_dim) per sample, averaged over the batch.

    This is ReStyle's/pSp's W-norm: the norm is **not squared** by default (``squared=False``); with
    ``squared=True`` it is the sum of squares per sample, averaged over the batch.

    forward(w (B, n_latent, style_dim), w_avg broadcastable to it: (style_dim,), (n_latent, style_dim)
    or (1, n_latent, style_dim)) -> scalar >= 0, 0 iff every w equals w_avg.
    """

    def __init__(self, squared: bool = False):
        super().__init__()
        self.squared = squared

    def forward(self, w: torch.Tensor, w_avg: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm((w - w_avg).flatten(1), dim=1)  # its gradient at 0 is 0, not NaN
        return (norm.pow(2) if self.squared else norm).mean()

    def extra_repr(self) -> str:
        return f"squared={self.squared}"
