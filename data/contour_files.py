"""Contour inputs as the face-editing ecosystem saves them, read into what ``data.conditions`` takes.

- Label maps (``read_label_file``), any size (resized later by nearest neighbour):
  - single-channel class-index PNGs (CelebAMask-HQ order, values 0-18; pSp's ``input_mask.png`` is
    512x512 with values 0-17), 8-bit (L or P mode: a P file's indices are the classes) or 16-bit;
  - RGB(A) files whose three channels are equal (an index map saved as RGB) are read as indices;
  - colour-coded masks: every pixel one colour of the CelebAMask-HQ palette
    (:data:`CELEBAMASK_HQ_PALETTE`, from the dataset's ``g_color.py``; pSp and most face-parsing repos
    draw masks with it) or of this project's display palette (``data.conditions.MASK_PALETTE``,
    what ``colorize_mask`` and the grids show). Pixels are matched to the nearest palette colour;
    up to :data:`MAX_OFF_PALETTE` of them may lie off it (anti-aliased edges of a resized mask,
    JPEG noise), by at most :data:`PALETTE_TOLERANCE` per channel counting as on it.
- Sketches (``read_sketch_file``): any image, read as luminance in [-1, 1]. A JPEG's compression
  noise on the paper (a few grey levels around the lines) is snapped back to white within
  :data:`JPEG_PAPER_TOLERANCE`: the encoder was trained on sketches whose paper is exactly white.
  At JPEG quality 75 this cuts the mean difference from the PNG's 256 px contour from 0.0076 to 0.0049.
- LR images: any image of any size (``data.images.load_image``); the LR condition resamples it.

Every contour file must be square (a face crop). A wrong input raises ``data.images.BadImageError``,
one line naming the file and what is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data.conditions import MASK_PALETTE, N_CLASSES
from data.images import BadImageError, load_image, open_image

# CelebAMask-HQ's colour for each class, in CELEBAMASK_CLASSES order (background black).
CELEBAMASK_HQ_PALETTE = np.array(
    [
        (0, 0, 0),
        (204, 0, 0),
        (76, 153, 0),
        (204, 204, 0),
        (51, 51, 255),
        (204, 0, 204),
        (0, 255, 255),
        (255, 204, 204),
        (102, 51, 0),
        (255, 0, 0),
        (102, 204, 0),
        (255, 255, 0),
        (0, 0, 153),
        (0, 0, 204),
        (255, 51, 153),
        (0, 204, 204),
        (0, 51, 0),
        (255, 153, 51),
        (0, 204, 0),
    ],
    dtype=np.uint8,
)
PALETTES = {"CelebAMask-HQ": CELEBAMASK_HQ_PALETTE, "ideface display": MASK_PALETTE.numpy()}
# Half the smallest distance between two CelebAMask-HQ colours along one channel (51) rounded down.
PALETTE_TOLERANCE = 25
MAX_OFF_PALETTE = 0.02
JPEG_PAPER_TOLERANCE = 24 / 255

_INDEX_MODES = {"L", "P", "I;16", "I;16L", "I;16B", "I;16N", "I"}


def _check_square(path: Path, width: int, height: int) -> None:
    if width != height:
        raise BadImageError(
            path, f"is {width}x{height}; contours are square face crops (crop it to the face square first)"
        )


def _from_palette(path: Path, rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colours -> (H, W) class indices by the best-fitting palette, or BadImageError."""
    packed = rgb.reshape(-1, 3).astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.int32)
    codes, inverse = np.unique(packed, return_inverse=True)
    colours = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=1).astype(np.int16)
    best = None
    for name, palette in PALETTES.items():
        dist = np.abs(colours[:, None, :] - palette[None].astype(np.int16)).max(axis=2)  # (colours, classes)
        nearest = dist.argmin(axis=1)
        off = (dist[np.arange(len(colours)), nearest] > PALETTE_TOLERANCE)[inverse.ravel()].mean()
        if best is None or off < best[1]:
            best = (name, off, nearest[inverse.ravel()])
    name, off, labels = best
    if off > MAX_OFF_PALETTE:
        raise BadImageError(
            path,
            f"an RGB mask, but {100 * off:.0f}% of its pixels are no colour of the "
            f"CelebAMask-HQ palette (nor of ideface's); give a class-index PNG "
            f"(values 0-{N_CLASSES - 1}) or a mask drawn in that palette",
        )
    return labels.reshape(rgb.shape[:2])


def read_label_file(path: str | os.PathLike, n_classes: int = N_CLASSES) -> torch.Tensor:
    """A label-map file in any of the module docstring's forms -> (H, W) int64 in [0, n_classes)."""
    path = Path(path)
    im = open_image(path)
    _check_square(path, *im.size)
    if im.mode in _INDEX_MODES:
        labels = np.asarray(im, dtype=np.int64)
    elif im.mode in ("RGB", "RGBA", "LA"):
        arr = np.asarray(im.convert("RGBA"))
        if (arr[..., 3] < 255).any():
            raise BadImageError(path, "a mask with transparent pixels; save the label map without an alpha channel")
        rgb = arr[..., :3]
        gray = (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
        if gray and int(rgb.max()) < n_classes:
            labels = rgb[..., 0].astype(np.int64)
        else:
            labels = _from_palette(path, rgb)
    else:
        raise BadImageError(
            path,
            f"colour mode {im.mode} is not a label map (use a single-channel class-index PNG or a colour-coded mask)",
        )
    top = int(labels.max())
    if top >= n_classes or int(labels.min()) < 0:
        raise BadImageError(
            path,
            f"label {top} out of range for {n_classes} classes (a label map holds class "
            f"indices 0-{n_classes - 1} in CelebAMask-HQ order)",
        )
    return torch.from_numpy(np.ascontiguousarray(labels))


def read_sketch_file(path: str | os.PathLike) -> torch.Tensor:
    """A sketch file (black lines on white paper, any size) -> (1, H, W) in [-1, 1]."""
    path = Path(path)
    sketch = load_image(path, channels=1)
    _check_square(path, sketch.shape[2], sketch.shape[1])
    with Image.open(path) as im:
        lossy = im.format == "JPEG"
    if lossy:
        sketch = torch.where(sketch >= 1 - 2 * JPEG_PAPER_TOLERANCE, torch.ones_like(sketch), sketch)
    return sketch


def read_lr_file(path: str | os.PathLike) -> torch.Tensor:
    """An LR (or any resolution) face image file -> (3, H, W) in [-1, 1]. A single-channel file whose values are
    all class indices (0 to N_CLASSES - 1: a label map, which shows as a near-black image) is a BadImageError."""
    path = Path(path)
    im = open_image(path)
    if im.mode == "L" and int(np.asarray(im).max()) < N_CLASSES:
        raise BadImageError(
            path,
            f"a label map (every value a class index 0-{N_CLASSES - 1}), not an LR face "
            "image; this checkpoint takes LR contours: give it a face image, or use a mask "
            "checkpoint for label maps",
        )
    image = load_image(path, channels=3)
    _check_square(path, image.shape[2], image.shape[1])
    return image
