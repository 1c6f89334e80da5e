"""Contour conditions: the encoder's main input, built from a photo or its annotations.

Three modalities (paper section 3.1), each a deterministic transform to the encoder input size:

- ``lr``: the photo bicubic-downsampled to ``lr_size`` (32 for CelebA-HQ) with PULSE's
  anti-aliased filter, then bicubic-upsampled back: (3, S, S) in [-1, 1];
- ``mask``: the 19 CelebAMask-HQ part masks merged into one label map (fixed class order, later
  classes painted over earlier ones, as the dataset's own merge script does), fed one-hot:
  (19, S, S) in {0, 1};
- ``sketch``: a line drawing (1, S, S) in [-1, 1], white background (+1), black lines (-1). The
  paper's sketches come from an external set ([22]); when none is given we compute an XDoG edge
  sketch from the photo (``xdog_sketch``), a documented stand-in: it follows the same contours
  (face outline, eyes, brows, mouth, hair edges) but has no artist style or simplification.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from data.images import load_binary_mask
from ops.resize import resize_to, upsample_bicubic

CELEBAMASK_CLASSES = (
    "background",
    "skin",
    "nose",
    "eye_g",
    "l_eye",
    "r_eye",
    "l_brow",
    "r_brow",
    "l_ear",
    "r_ear",
    "mouth",
    "u_lip",
    "l_lip",
    "hair",
    "hat",
    "ear_r",
    "neck_l",
    "neck",
    "cloth",
)
N_CLASSES = len(CELEBAMASK_CLASSES)
CONDITIONS = {"lr": 3, "mask": N_CLASSES, "sketch": 1}

# Display colours (RGB uint8), one per class in CELEBAMASK_CLASSES order; background is black.
MASK_PALETTE = torch.tensor(
    [
        (0, 0, 0),
        (230, 180, 140),
        (200, 110, 50),
        (100, 100, 100),
        (0, 80, 230),
        (0, 170, 255),
        (120, 60, 20),
        (180, 100, 40),
        (255, 215, 0),
        (255, 150, 0),
        (255, 60, 130),
        (200, 0, 60),
        (130, 0, 50),
        (110, 50, 200),
        (0, 160, 80),
        (255, 255, 130),
        (120, 255, 220),
        (200, 150, 120),
        (40, 100, 160),
    ],
    dtype=torch.uint8,
)


def condition_channels(name: str) -> int:
    """Channels of a contour modality: lr -> 3, mask -> 19, sketch -> 1."""
    if name not in CONDITIONS:
        raise ValueError(f"unknown condition {name!r}; choose one of {', '.join(CONDITIONS)}")
    return CONDITIONS[name]


def _batched(x: torch.Tensor, dims: int):
    """(x as a batch, a function that restores the caller's batching)."""
    if x.dim() == dims:
        return x[None], lambda y: y[0]
    if x.dim() == dims + 1:
        return x, lambda y: y
    raise ValueError(f"expected a {dims}-d tensor or a batch of them, got shape {tuple(x.shape)}")


def lr_downsample(img: torch.Tensor, lr_size: int = 32) -> torch.Tensor:
    """The low-resolution face: (3, H, W) or (B, 3, H, W) in [-1, 1] -> (..., 3, lr, lr) in [-1, 1].

    Integer factors (1024 -> 32) use PULSE's bicubic exactly; other sizes the same kernel stretched.
    """
    x, back = _batched(img, 3)
    return back(resize_to(x, lr_size).clamp(-1.0, 1.0))


def lr_contour(img: torch.Tensor, lr_size: int = 32, out_size: int = 256) -> torch.Tensor:
    """LR contour: (3, H, W) or (B, 3, H, W) in [-1, 1] -> (..., 3, out, out) in [-1, 1].

    Bicubic down to ``lr_size`` (``lr_downsample``), then bicubic back up to ``out_size``.
    """
    x, back = _batched(img, 3)
    return back(upsample_bicubic(lr_downsample(x, lr_size), out_size).clamp(-1.0, 1.0))


def merge_mask(parts: Mapping[str, torch.Tensor | str | os.PathLike], size: int | None = None) -> torch.Tensor:
    """Merge per-class part masks into one (H, W) int64 label map with values in [0, 19).

    ``parts`` maps class names (``CELEBAMASK_CLASSES[1:]``) to (H, W) bool tensors or to mask
    files. Classes are painted in ``CELEBAMASK_CLASSES`` order whatever the mapping's order, so a
    later class wins where parts overlap (hat over hair, nose over skin); uncovered pixels are 0.
    ``size``: resample every part to (size, size) by nearest neighbour first (CelebAMask-HQ parts
    are 512x512); without it all parts must share one shape.
    """
    unknown = sorted(set(parts) - set(CELEBAMASK_CLASSES[1:]))
    if unknown:
        raise ValueError(f"unknown mask classes {unknown}; known: {', '.join(CELEBAMASK_CLASSES[1:])}")
    if not parts:
        raise ValueError("merge_mask needs at least one part mask")
    labels = None
    for idx, name in enumerate(CELEBAMASK_CLASSES):
        if name not in parts:
            continue
        part = parts[name]
        part = load_binary_mask(part) if isinstance(part, (str, os.PathLike)) else part.bool()
        if size is not None and tuple(part.shape) != (size, size):
            part = F.interpolate(part[None, None].float(), size=(size, size), mode="nearest")[0, 0].bool()
        if labels is None:
            labels = torch.zeros(part.shape, dtype=torch.int64)
        elif part.shape != labels.shape:
            raise ValueError(
                f"mask {name!r} is {tuple(part.shape)} but earlier parts are "
                f"{tuple(labels.shape)}; pass size= to resample them"
            )
        labels[part] = idx
    return labels


def one_hot(labels: torch.Tensor, n_classes: int = N_CLASSES) -> torch.Tensor:
    """(B, H, W) or (H, W) int labels in [0, n) -> (B, n, H, W) / (n, H, W) float in {0, 1}."""
    if labels.dtype.is_floating_point:
        raise ValueError("one_hot expects integer labels")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(
            f"labels must lie in [0, {n_classes}), got values in [{int(labels.min())}, {int(labels.max())}]"
        )
    x, back = _batched(labels, 2)
    return back(F.one_hot(x.long(), n_classes).permute(0, 3, 1, 2).float())


def colorize_mask(labels: torch.Tensor) -> torch.Tensor:
    """Display a label map: (B, H, W) or (H, W) int -> (B, 3, H, W) / (3, H, W) RGB in [-1, 1]."""
    x, back = _batched(labels, 2)
    rgb = MASK_PALETTE.to(x.device)[x.long()].permute(0, 3, 1, 2).float()
    return back(rgb / 127.5 - 1.0)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), reflect-padded at the borders."""
    radius = max(1, int(3.0 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x)
    b, c, h, w = x.shape
    y = F.pad(x.reshape(b * c, 1, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(F.conv2d(y, k.view(1, 1, -1, 1)), k.view(1, 1, 1, -1))
    return y.reshape(b, c, h, w)


def xdog_sketch(
    img: torch.Tensor, sigma: float = 1.0, k: float = 1.6, tau: float = 0.99, eps: float = -0.005, phi: float = 200.0
) -> torch.Tensor:
    """XDoG edge sketch: (3, H, W) or (B, 3, H, W) in [-1, 1] -> (..., 1, H, W) in [-1, 1].

    Difference of Gaussians D = G_sigma(L) - tau * G_{k sigma}(L) on luminance L in [0, 1]; where
    D >= eps the pixel is white paper, below it the ink darkens smoothly, 1 + tanh(phi (D - eps)).
    With tau < 1 flat areas of any brightness stay white and only the dark side of an edge is
    inked, so the output is lines on a white background. ``sigma`` is in pixels of the input.
    """
    x, back = _batched(img, 3)
    lum = ((x + 1.0) * 0.5 * torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(
        1, keepdim=True
    )
    d = _gaussian_blur(lum, sigma) - tau * _gaussian_blur(lum, k * sigma)
    paper = torch.where(d >= eps, torch.ones_like(d), 1.0 + torch.tanh(phi * (d - eps)))
    return back(paper.clamp(0.0, 1.0) * 2.0 - 1.0)


class Condition:
    """A contour transform to the encoder input size ``out_size``; ``channels`` as in CONDITIONS.

    ``cond(image=None, *, labels=None, sketch=None)``: image (3, H, W) / (B, 3, H, W) in [-1, 1],
    labels (H, W) / (B, H, W) int64, sketch (1, H, W) / (B, 1, H, W) in [-1, 1]; each modality
    uses what it needs and says which argument is missing. Returns (..., channels, S, S).
    """

    name: str

    def __init__(self, out_size: int):
        self.out_size = out_size

    @property
    def channels(self) -> int:
        return CONDITIONS[self.name]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(out_size={self.out_size})"

    def _need(self, value, what: str):
        if value is None:
            raise ValueError(f"the {self.name!r} condition needs {what}")
        return value


class LRCondition(Condition):
    name = "lr"

    def __init__(self, out_size: int = 256, lr_size: int = 32):
        super().__init__(out_size)
        self.lr_size = lr_size

    def __call__(self, image=None, *, labels=None, sketch=None) -> torch.Tensor:
        return lr_contour(self._need(image, "the photo (image=)"), self.lr_size, self.out_size)


class MaskCondition(Condition):
    name = "mask"

    def __call__(self, image=None, *, labels=None, sketch=None) -> torch.Tensor:
        x, back = _batched(self._need(labels, "a label map (labels=)"), 2)
        if x.shape[-1] != self.out_size or x.shape[-2] != self.out_size:
            # Nearest keeps labels categorical; CelebAMask-HQ's 512 -> 256 picks every other pixel.
            x = F.interpolate(x[:, None].float(), size=(self.out_size,) * 2, mode="nearest")[:, 0].long()
        return back(one_hot(x))


class SketchCondition(Condition):
    """A given sketch resized to ``out_size``; without one, ``xdog_sketch`` of the resized photo."""

    name = "sketch"

    def __init__(self, out_size: int = 256, **xdog):
        super().__init__(out_size)
        self.xdog = xdog

    def __call__(self, image=None, *, labels=None, sketch=None) -> torch.Tensor:
        if sketch is not None:
            x, back = _batched(sketch, 3)
            return back(resize_to(x, self.out_size).clamp(-1.0, 1.0))
        x, back = _batched(self._need(image, "a sketch (sketch=) or the photo to draw one from (image=)"), 3)
        return back(xdog_sketch(resize_to(x, self.out_size).clamp(-1.0, 1.0), **self.xdog))


def make_condition(name: str, out_size: int = 256, lr_size: int = 32, **xdog) -> Condition:
    """The contour transform for ``name`` (lr | mask | sketch) at encoder input size ``out_size``.

    ``lr_size`` is used by ``lr``; extra keywords go to ``xdog_sketch`` for ``sketch``.
    """
    condition_channels(name)
    if name == "lr":
        return LRCondition(out_size, lr_size)
    if name == "mask":
        return MaskCondition(out_size)
    return SketchCondition(out_size, **xdog)


def contour_to_rgb(contour: torch.Tensor) -> torch.Tensor:
    """Display a contour: (B, C, H, W) with C = 3 (image), 1 (sketch) or 19 (one-hot) -> (B, 3, H, W)."""
    if contour.shape[1] == 3:
        return contour
    if contour.shape[1] == 1:
        return contour.expand(-1, 3, -1, -1)
    return colorize_mask(contour.argmax(1)).to(contour)
