"""The resize kernels: PULSE-style bicubic downsampling, the anti-aliased resize/upsample around it, area, bilinear."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ops.resize import KERNELS, bicubic_downsample, bicubic_kernel, resize_to, upsample_bicubic


def _cubic_scalar(t: float, a: float = -0.5) -> float:
    t = abs(t)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t < 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def _direct_downsample(x: np.ndarray, f: int) -> np.ndarray:
    """Textbook separable filter: each output pixel = weighted sum over the 4f input pixels around it."""
    n = 4 * f
    w = np.array([_cubic_scalar((i - 2 * f + 0.5) / f) for i in range(n)])
    w /= w.sum()
    lead, trail = (n - f) // 2, n - f - (n - f) // 2
    h, wd = x.shape
    xp = np.pad(x, ((lead, trail), (0, 0)), mode="reflect")
    rows = np.array([[sum(w[i] * xp[j * f + i, c] for i in range(n)) for c in range(wd)] for j in range(h // f)])
    rp = np.pad(rows, ((0, 0), (lead, trail)), mode="reflect")
    return np.array(
        [[sum(w[i] * rp[r, j * f + i] for i in range(n)) for j in range(wd // f)] for r in range(rows.shape[0])]
    )


def test_kernel_taps_follow_the_bicubic_formula():
    for f in (1, 2, 3, 4):
        k = bicubic_kernel(f)
        assert k.shape == (4 * f,) and torch.isclose(k.sum(), torch.tensor(1.0, dtype=k.dtype))
        assert torch.allclose(k, k.flip(0))  # symmetric around the output pixel centre
    raw = torch.tensor([_cubic_scalar((i - 4 + 0.5) / 2) for i in range(8)], dtype=torch.float64)
    assert torch.allclose(bicubic_kernel(2), raw / raw.sum())
    # a = -0.5 gives the characteristic negative lobes at the outer taps
    assert (bicubic_kernel(4)[:2] < 0).all()
    with pytest.raises(ValueError):
        bicubic_kernel(2.5)


@pytest.mark.parametrize("f,h,w", [(2, 12, 10), (3, 18, 15), (4, 16, 16), (4, 18, 21)])
def test_matches_direct_separable_computation(f, h, w):
    x = np.random.default_rng(f).normal(size=(h, w))
    ours = bicubic_downsample(torch.tensor(x)[None, None], f)[0, 0].numpy()
    ref = _direct_downsample(x, f)
    assert ours.shape == (h // f, w // f)
    np.testing.assert_allclose(ours, ref, atol=1e-10)


@pytest.mark.parametrize("value", [-3.7, 0.0, 0.25, 250.0])
@pytest.mark.parametrize("f", [2, 3, 8])
def test_exact_on_constants_of_any_range(value, f):
    x = torch.full((2, 5, 24, 24), value)
    y = bicubic_downsample(x, f)
    assert y.shape == (2, 5, 24 // f, 24 // f) and y.dtype == x.dtype
    assert torch.allclose(y, torch.full_like(y, value), rtol=1e-6, atol=1e-6)


def test_anti_aliasing_removes_pixel_frequency_stripes():
    stripes = torch.tensor([1.0, -1.0]).repeat(16).view(1, 1, 1, 32).expand(1, 1, 32, 32)
    y = bicubic_downsample(stripes, 4)
    # plain decimation would return all +1 (or all -1); a low-pass before it returns the mean, 0
    assert y.abs().max() < 0.02
    assert (stripes[..., ::4, ::4] == 1).all()


def test_size_keyword_factor_one_and_bad_arguments():
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(bicubic_downsample(x, size=8), bicubic_downsample(x, 4))
    assert bicubic_downsample(x, 1) is x
    for bad in (dict(), dict(factor=2, size=16)):
        with pytest.raises(ValueError):
            bicubic_downsample(x, **bad)
    with pytest.raises(ValueError, match="resize_to"):
        bicubic_downsample(x, size=10)
    with pytest.raises(ValueError):
        bicubic_downsample(x[0], 2)


def test_tiny_image_falls_back_to_replicate_padding():
    x = torch.full((1, 1, 8, 8), 0.3)
    y = bicubic_downsample(x, 8)  # reflecting 12 pixels of an 8-pixel image is impossible
    assert y.shape == (1, 1, 1, 1) and torch.allclose(y, torch.tensor(0.3))


def _smooth_uint8(n: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n] / n
    return np.stack(
        [128 + 100 * np.sin(6 * xx + 3 * yy), 128 + 90 * np.cos(5 * yy), 128 + 80 * np.sin(4 * (xx - yy))], -1
    ).astype(np.uint8)


@pytest.mark.parametrize("size", [24, 16, 100])
def test_resize_agrees_with_pillow_bicubic(size):
    a = _smooth_uint8()
    ours = resize_to(torch.from_numpy(a).permute(2, 0, 1)[None].float(), size)[0]
    ours = ours.permute(1, 2, 0).clamp(0, 255).round().numpy()
    pil = np.asarray(Image.fromarray(a).resize((size, size), Image.BICUBIC), dtype=np.float64)
    # Same a = -0.5 kernel and support; only border handling (PULSE reflects, Pillow renormalises)
    # and Pillow's 8-bit intermediate rounding differ.
    assert np.abs(ours - pil)[2:-2, 2:-2].max() <= 1
    assert np.abs(ours - pil).mean() < 0.3


def test_resize_dispatch_constants_and_determinism():
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(resize_to(x, 16), bicubic_downsample(x, 4))
    assert resize_to(x, 64) is x
    for size in (24, (20, 30), 100):
        y1, y2 = resize_to(x, size), resize_to(x, size)
        assert torch.equal(y1, y2)
    c = torch.full((1, 3, 64, 64), -0.8)
    for size in (24, 100, (40, 80)):
        assert torch.allclose(resize_to(c, size), torch.tensor(-0.8), atol=1e-6)


def test_upsample_shape_constants_and_refusal_to_shrink():
    x = torch.randn(1, 2, 8, 8)
    assert upsample_bicubic(x, 32).shape == (1, 2, 32, 32)
    assert torch.allclose(upsample_bicubic(torch.full((1, 1, 8, 8), 5.0), 33), torch.tensor(5.0), atol=1e-5)
    with pytest.raises(ValueError, match="resize_to"):
        upsample_bicubic(x, 4)
    # interpolating: the upsampled image brought back down is close to the original
    smooth = torch.from_numpy(_smooth_uint8(16)).permute(2, 0, 1)[None].float() / 127.5 - 1
    back = bicubic_downsample(upsample_bicubic(smooth, 64), 4)
    assert (back - smooth).abs().mean() < 0.05


def test_area_kernel_is_the_box_average_down_and_bilinear_up():
    x = torch.rand(1, 3, 8, 8)
    down = resize_to(x, 2, "area")
    assert torch.allclose(down, x.reshape(1, 3, 2, 4, 2, 4).mean((3, 5)))
    up = resize_to(x, (12, 16), "area")
    assert torch.equal(up, F.interpolate(x, size=(12, 16), mode="bilinear", align_corners=False))


def test_bilinear_kernel_is_torchs_antialiased_bilinear():
    x = torch.rand(2, 1, 30, 30)
    assert torch.equal(
        resize_to(x, 7, "bilinear"), F.interpolate(x, size=(7, 7), mode="bilinear", align_corners=False, antialias=True)
    )


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_every_kernel_keeps_constants_and_returns_same_size_input(kernel):
    x = torch.full((1, 2, 12, 12), 0.3)
    assert torch.allclose(resize_to(x, 5, kernel), torch.full((1, 2, 5, 5), 0.3), atol=1e-6)
    assert resize_to(x, 12, kernel) is x


def test_unknown_kernel_names_the_known_ones():
    with pytest.raises(ValueError, match="bicubic, area, bilinear"):
        resize_to(torch.zeros(1, 1, 4, 4), 2, "lanczos")
