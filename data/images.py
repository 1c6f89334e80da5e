"""Robust image file I/O: every odd-but-valid file is converted, every broken one is named.

Loading always yields float RGB (or gray) tensors in [-1, 1]:

- EXIF orientation is applied (phone photos are stored sideways with a rotation tag);
- grayscale (``L``, ``1``) is repeated to 3 channels; palette images are expanded;
- alpha (``RGBA``, ``LA``, palette transparency) is composited on WHITE: transparent pixels of a
  cut-out face are background, and a white background is what a viewer shows for them
  (dropping the alpha would expose whatever colour the encoder left under it, often black);
- CMYK / YCbCr / LAB are converted with Pillow's transforms (no ICC colour management);
- 16-bit files keep their range: 16-bit grayscale is scaled by 1/65535 (Pillow's own conversion
  would clip it at 255), 16-bit RGB is read by Pillow at 8 bits per channel.

A corrupt, truncated, empty or non-image file raises ``BadImageError`` (a ``ValueError``) with
the file name and what to do; a missing file raises ``FileNotFoundError``. Writes are atomic
(temporary file + rename), so an interrupted run never leaves a half-written image behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ops.atomic_write import atomic_path
from ops.resize import resize_to

_ADVICE = "Re-download or replace this file (`ideface-prepare` lists every bad file)."
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class BadImageError(ValueError):
    """An image file that exists but cannot be used; ``.path`` and ``.reason`` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"bad image file {self.path}: {reason}. {_ADVICE}")


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open, fully decode and EXIF-orient an image file; raises ``BadImageError`` if it is unusable."""
    path = Path(path)
    if path.is_dir():
        raise BadImageError(path, "a folder, not an image file; give the path of one image")
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.stat().st_size == 0:
        raise BadImageError(path, "empty file (0 bytes)")
    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise BadImageError(path, "not a recognised image format (corrupt, or not an image)") from None
    except Image.DecompressionBombError as e:
        raise BadImageError(path, f"image too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # header itself cut short or malformed
        raise BadImageError(path, f"truncated or corrupt image header ({e})") from None
    try:
        # Decoding happens lazily in Pillow; force it here so truncation surfaces now, with the name.
        im.load()
        return ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise BadImageError(path, f"truncated or corrupt image data ({e})") from None
    finally:
        im.close()


def _to_rgb_float(im: Image.Image, path: Path) -> np.ndarray:
    """A Pillow image of any supported mode as an (H, W, 3) float32 array in [0, 1]."""
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(im, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=-1)
    if mode == "F":
        raise BadImageError(path, "floating-point image (mode F) has no defined range; save it as 8/16-bit")
    if "transparency" in im.info and mode in ("P", "L", "RGB"):
        im, mode = im.convert("RGBA"), "RGBA"
    try:
        if mode in _ALPHA_MODES:
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
            alpha = rgba[..., 3:]
            return rgba[..., :3] * alpha + (1.0 - alpha)
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except ValueError as e:
        raise BadImageError(path, f"colour mode {mode} cannot be converted to RGB ({e})") from None


def load_image(path: str | os.PathLike, size: int | tuple[int, int] | None = None, channels: int = 3) -> torch.Tensor:
    """Read an image file as a float tensor (channels, H, W) in [-1, 1].

    ``size``: resize to (size, size) or (h, w) with the anti-aliased bicubic of ``ops.resize``
    (aspect ratio not preserved). ``channels=1`` gives luminance (ITU-R 601 weights).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    path = Path(path)
    im = open_image(path)
    if size is not None:
        im = _box_reduce_huge(im, (size, size) if isinstance(size, int) else tuple(size))
    rgb = torch.from_numpy(_to_rgb_float(im, path)).permute(2, 0, 1)
    if channels == 1:
        rgb = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
    x = rgb * 2.0 - 1.0
    if size is not None:
        x = resize_to(x[None], size)[0].clamp(-1.0, 1.0)
    return x.contiguous()


# An 8-bit image at least this many times the requested size on both sides is first box-averaged in
# uint8 by an integer factor (to at least this multiple), so a 12,000 px photo never becomes a float
# array at full size (5.6 GB). Smaller images take the exact path; the values of huge ones differ from
# it by the rounding of one uint8 box average (about 1/255).
_HUGE_FACTOR = 8


def _box_reduce_huge(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``im`` box-reduced in its 8-bit mode when it is ``_HUGE_FACTOR`` x ``size`` (h, w) or more; else
    ``im`` itself."""
    if im.mode not in ("RGB", "L") or "transparency" in im.info:
        return im
    factor = min(im.height // size[0], im.width // size[1]) // (_HUGE_FACTOR // 2)
    return im.reduce(factor) if factor >= 2 else im


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (H, W) float in [-1, 1] -> (H, W, C) / (H, W) uint8 via round((x + 1) * 127.5)."""
    q = torch.round((x.detach().float().cpu() + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)
    return (q.permute(1, 2, 0) if q.dim() == 3 else q).numpy()


def save_pil_atomic(im: Image.Image, path: str | os.PathLike, text: dict[str, str] | None = None) -> Path:
    """Save a Pillow image to ``path`` via a temporary file and rename; the format follows the suffix.

    text: key/value strings stored as PNG text chunks (PNG only; other formats raise ValueError).
    """
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format from the suffix of {path}")
    extra = {}
    if text:
        if fmt != "PNG":
            raise ValueError(f"{path}: text metadata is written to PNG files only")
        from PIL.PngImagePlugin import PngInfo

        extra["pnginfo"] = info = PngInfo()
        for key, value in text.items():
            info.add_text(key, str(value))
    with atomic_path(path) as tmp:
        im.save(tmp, format=fmt, **extra)
    return path


def save_image(x: torch.Tensor, path: str | os.PathLike, text: dict[str, str] | None = None) -> Path:
    """Write (3, H, W), (1, H, W) or (H, W) in [-1, 1] as an 8-bit RGB or grayscale file (atomic).

    text: PNG text chunks (see ``save_pil_atomic``)."""
    if x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if not (x.dim() == 2 or (x.dim() == 3 and x.shape[0] == 3)):
        raise ValueError(f"save_image expects (3, H, W), (1, H, W) or (H, W), got {tuple(x.shape)}")
    return save_pil_atomic(Image.fromarray(to_uint8(x)), path, text)


def load_binary_mask(path: str | os.PathLike) -> torch.Tensor:
    """A CelebAMask-HQ part mask file as an (H, W) bool tensor: any nonzero gray value is the part.

    (Nonzero, not > 127, as the dataset's own merge script reads them.)
    """
    return torch.from_numpy(np.asarray(open_image(path).convert("L")) != 0)


def save_label_map(labels: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write an (H, W) int label map with values in [0, 255] as an 8-bit PNG (atomic, lossless)."""
    if labels.dim() != 2 or labels.min() < 0 or labels.max() > 255:
        raise ValueError("save_label_map expects an (H, W) map with values in [0, 255]")
    return save_pil_atomic(Image.fromarray(labels.cpu().to(torch.uint8).numpy(), mode="L"), path)


def load_label_map(path: str | os.PathLike, n_classes: int | None = None) -> torch.Tensor:
    """Read a label-map PNG as (H, W) int64; values must be < ``n_classes`` when given."""
    im = open_image(path)
    if im.mode not in ("L", "P"):
        raise BadImageError(path, f"a label map must be a single-channel 8-bit PNG, got mode {im.mode}")
    labels = torch.from_numpy(np.asarray(im, dtype=np.int64).copy())
    if n_classes is not None and int(labels.max()) >= n_classes:
        raise BadImageError(path, f"label {int(labels.max())} out of range for {n_classes} classes")
    return labels
