"""LPIPS between outputs and real faces, per pair, on a network of ``models.lpips_network``."""

from __future__ import annotations

import lpips
import torch

from ops.resize import resize_to
from ops.shapes import assert_shape


def lpips_distance(x: torch.Tensor, y: torch.Tensor, model: lpips.LPIPS, size: int | None = 256) -> torch.Tensor:
    """Per-pair LPIPS, (B,) float.

    x, y: (B, 3, H, W) in [-1, 1] (clipped to it, as saved images would be). Both are resized to
    ``size`` x ``size`` (bilinear, antialiased, as the evaluation at 256 of the paper) unless
    ``size`` is None or already matches. Runs without gradients, on the model's device.
    """
    assert_shape(x, (None, 3, None, None), "LPIPS images")
    assert_shape(y, tuple(x.shape), "LPIPS references")
    device = next(iter(model.parameters()), torch.empty(0)).device
    x, y = (_prepare(t.to(device), size) for t in (x, y))
    with torch.no_grad():
        return model(x, y).reshape(len(x))


def _prepare(images: torch.Tensor, size: int | None) -> torch.Tensor:
    images = images.float().clamp(-1, 1)
    return images if size is None else resize_to(images, size, "bilinear")
