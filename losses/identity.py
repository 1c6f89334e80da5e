"""ArcFace identity loss L_id = 1 - cos(z_id, z_gen) (eq. 4); the ArcFace comes from ``models.irse.load_arcface``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.frozen import freeze
from ops.resize import resize_to

PSP_CROP = (35 / 256, 223 / 256, 32 / 256, 220 / 256)  # pSp's [35:223, 32:220] of a 256 face
FULL_CROP = (0.0, 1.0, 0.0, 1.0)


def crop_fraction(x: torch.Tensor, crop: Sequence[float]) -> torch.Tensor:
    """Crop (B, C, H, W) to rows [top*H, bottom*H) and columns [left*W, right*W), rounded half up.

    ``crop = (top, bottom, left, right)`` as fractions, so one crop serves every resolution
    (:data:`PSP_CROP` gives exactly ``[:, :, 35:223, 32:220]`` at 256).
    """
    top, bottom, left, right = crop
    if not (0 <= top < bottom <= 1 and 0 <= left < right <= 1):
        raise ValueError(f"crop must be fractions, 0 <= top < bottom <= 1 and 0 <= left < right <= 1: {crop}")
    h, w = x.shape[-2:]
    t, b, lft, r = (int(math.floor(f * n + 0.5)) for f, n in zip(crop, (h, h, w, w)))
    return x[:, :, t:b, lft:r]


def arcface_input(x: torch.Tensor, crop: Sequence[float], size: int = 112) -> torch.Tensor:
    """A face (B, 3, H, W) in [-1, 1] -> the ArcFace input (B, 3, size, size) in [-1, 1].

    Crop by fractions, then average-pool to ``size`` (pSp's AdaptiveAvgPool2d(112)); a crop smaller
    than ``size`` (toy world: 64 -> 112) is enlarged bilinearly instead.
    """
    return resize_to(crop_fraction(x, crop), size, "area")


class IdentityLoss(nn.Module):
    """L_id = mean over the batch of 1 - cos(emb(identity), emb(output)), in [0, 2].

    ``embedder``: an ArcFace network, (B, 3, S, S) in [-1, 1] -> (B, D) embeddings (S =
    ``embedder.input_size``, default 112); frozen here, kept in eval mode even when the owner calls
    ``.train()``. ``crop``: (top, bottom, left, right) fractions, :data:`PSP_CROP` for 256 FFHQ-aligned
    faces and the real IR-SE50. The identity embedding is treated as a constant (no gradient), as in pSp.
    """

    def __init__(self, embedder: nn.Module, crop: Sequence[float] = PSP_CROP):
        super().__init__()
        self.embedder = freeze(embedder)
        self.crop = tuple(float(c) for c in crop)
        self.input_size = int(getattr(embedder, "input_size", 112))

    def train(self, mode: bool = True) -> IdentityLoss:
        super().train(mode)
        self.embedder.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> unit-norm embeddings (B, D)."""
        return F.normalize(self.embedder(arcface_input(x, self.crop, self.input_size)), dim=1)

    def distance(self, output: torch.Tensor, identity_embedding: torch.Tensor) -> torch.Tensor:
        """Per-sample 1 - cos: output (B, 3, H, W) in [-1, 1], identity_embedding (B, D) -> (B,)."""
        return 1 - (self.embed(output) * F.normalize(identity_embedding, dim=1)).sum(1)

    def forward(self, output: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """output, identity: (B, 3, H, W) in [-1, 1] (sizes may differ) -> scalar in [0, 2]."""
        with torch.no_grad():
            target = self.embed(identity)
        return self.distance(output, target).mean()
