"""Image resizing with named kernels: the one resize module of the tree (data, losses, metrics, models).

:func:`resize_to` takes ``kernel=``, a name in :data:`KERNELS`:

- ``bicubic`` (default): anti-aliased a = -0.5 bicubic (the LR contour, photos, PULSE's filter);
- ``area``: pSp's face pool, an average over each output pixel's input box when shrinking (exact box
  filter for integer factors such as 1024 -> 256), bilinear when growing (the losses' resolution);
- ``bilinear``: anti-aliased bilinear (the metrics' network inputs, torch's ``antialias=True``).

``bicubic_downsample`` is PULSE's ``BicubicDownSample`` in form (REFERENCE.md section 6): a
separable bicubic kernel (a = -0.5) stretched over ``4 * factor`` taps so that it low-passes
before decimating, normalised to sum 1, reflect padding, stride ``factor``. ``resize_to`` covers
non-integer factors and ``upsample_bicubic`` the way back up, both with the same a = -0.5 kernel
(torch's anti-aliased bicubic, the filter Pillow's ``BICUBIC`` uses).

All functions take ``(B, C, H, W)`` float tensors of any range and channel count and keep dtype
and device. Because every kernel is normalised, a constant image stays exactly constant (up to
float rounding); bicubic overshoot near edges is NOT clamped here (callers that need [-1, 1]
clamp).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ops.shapes import assert_shape

BICUBIC_A = -0.5


def _cubic(t: torch.Tensor, a: float = BICUBIC_A) -> torch.Tensor:
    """Keys' cubic convolution kernel evaluated at offsets ``t`` (any shape)."""
    t = t.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = (((t - 5) * t + 8) * t - 4) * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def bicubic_kernel(factor: int) -> torch.Tensor:
    """PULSE's 1-D downsampling taps for an integer ``factor``: (4 * factor,) float64, sum 1.

    Tap ``i`` samples the cubic at ``(i - 2 * factor + 0.5) / factor``, i.e. at the centres of
    the ``4 * factor`` input pixels around one output pixel, in output-pixel units.
    """
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    factor = int(factor)
    size = 4 * factor
    t = (torch.arange(size, dtype=torch.float64) - size // 2 + 0.5) / factor
    k = _cubic(t)
    return k / k.sum()


def _factor_for(x: torch.Tensor, factor: int | None, size: int | None) -> int:
    if (factor is None) == (size is None):
        raise ValueError("give exactly one of factor (positional) or size= to bicubic_downsample")
    if factor is not None:
        return factor
    h, w = x.shape[-2:]
    if h != w or h % size:
        raise ValueError(f"size={size} is not an integer fraction of a square {h}x{w} image; use resize_to")
    return h // size


def bicubic_downsample(x: torch.Tensor, factor: int | None = None, *, size: int | None = None) -> torch.Tensor:
    """PULSE's anti-aliased bicubic downsampling by an integer factor.

    x: (B, C, H, W) float, any range. ``factor`` (positional) or ``size=`` (square output side,
    must divide H = W). Returns (B, C, H // factor, W // factor), same dtype/device.

    Padding is ``reflect`` (1.5 * factor pixels each side, the extra one at the bottom/right for
    odd totals, as in PULSE); an image too small to reflect that far (side <= 1.5 * factor) is
    padded by edge replication instead. ``factor=1`` returns ``x`` unchanged (PULSE would apply a
    half-pixel-shifted blur, which is never what a caller wants).
    """
    assert_shape(x, (None, None, None, None), "bicubic_downsample's input")
    factor = _factor_for(x, factor, size)
    if factor == 1:
        return x
    taps = bicubic_kernel(factor).to(device=x.device, dtype=x.dtype)
    b, c, h, w = x.shape
    n = taps.numel()
    lead = (n - factor) // 2
    trail = n - factor - lead
    y = x.reshape(b * c, 1, h, w)
    mode = "reflect" if min(h, w) > trail else "replicate"
    y = F.pad(y, (0, 0, lead, trail), mode=mode)
    y = F.conv2d(y, taps.view(1, 1, n, 1), stride=(factor, 1))
    y = F.pad(y, (lead, trail, 0, 0), mode=mode)
    y = F.conv2d(y, taps.view(1, 1, 1, n), stride=(1, factor))
    return y.reshape(b, c, y.shape[-2], y.shape[-1])


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


def _bicubic_aa(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    # torch's anti-aliased path uses a = -0.5 and clamps the support at the borders with
    # renormalised weights (exact on constants); the plain bicubic path would use a = -0.75.
    return F.interpolate(x, size=hw, mode="bicubic", align_corners=False, antialias=True)


def upsample_bicubic(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bicubic (a = -0.5) upsampling: (B, C, H, W) any range -> (B, C, *size), size >= (H, W)."""
    hw = _pair(size)
    if hw[0] < x.shape[-2] or hw[1] < x.shape[-1]:
        raise ValueError(f"upsample_bicubic cannot shrink {tuple(x.shape[-2:])} to {hw}; use resize_to")
    if hw == tuple(x.shape[-2:]):
        return x
    return _bicubic_aa(x, hw)


def _bicubic(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """The same integer factor on both axes goes through ``bicubic_downsample`` (PULSE's filter);
    anything else (non-integer shrink, growth, mixed) uses the same cubic, stretched by the scale when
    shrinking. Deterministic (no random or atomic-add kernels on the forward)."""
    h, w = x.shape[-2:]
    if hw[0] <= h and hw[1] <= w and h % hw[0] == 0 and w % hw[1] == 0 and h // hw[0] == w // hw[1]:
        return bicubic_downsample(x, h // hw[0])
    return _bicubic_aa(x, hw)


def _area(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    # pooling to a larger grid would only repeat pixels, so growth is bilinear
    if x.shape[-2] >= hw[0] and x.shape[-1] >= hw[1]:
        return F.adaptive_avg_pool2d(x, hw)
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False)


def _bilinear(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)


KERNELS = {"bicubic": _bicubic, "area": _area, "bilinear": _bilinear}


def resize_to(x: torch.Tensor, size: int | tuple[int, int], kernel: str = "bicubic") -> torch.Tensor:
    """Resize (B, C, H, W) any range -> (B, C, *size) (an int means square) with ``kernel`` (a name in
    :data:`KERNELS`, see the module docstring); the input itself when it already has that size."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown resize kernel {kernel!r}; use one of {', '.join(KERNELS)}")
    hw = _pair(size)
    if hw == tuple(x.shape[-2:]):
        return x
    return KERNELS[kernel](x, hw)
