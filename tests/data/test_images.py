"""Image loading: odd-but-valid files converted correctly, broken ones named."""

import numpy as np
import pytest
import torch
from PIL import Image

from data.images import (
    BadImageError,
    load_binary_mask,
    load_image,
    load_label_map,
    save_image,
    save_label_map,
    to_uint8,
)


def _rgb(n=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, n, 3), dtype=np.uint8)


def _as_uint8(x: torch.Tensor) -> np.ndarray:
    return torch.round((x + 1) * 127.5).to(torch.uint8).permute(1, 2, 0).numpy()


def test_rgb_png_loads_exactly_and_round_trips(tmp_path):
    a = _rgb()
    Image.fromarray(a).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    np.testing.assert_array_equal(_as_uint8(x), a)
    save_image(x, tmp_path / "b.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png")), a)


def test_save_quantisation_rule_and_clamping(tmp_path):
    x = torch.tensor([-1.0, -2.0, 0.0, 1.0, 3.0, 0.5 / 127.5 - 1.0]).view(1, 1, 6).expand(3, 1, 6)
    np.testing.assert_array_equal(to_uint8(x)[0, :, 0], [0, 0, 128, 255, 255, 0])  # round half to even
    save_image(x[:1], tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode == "L"
    with pytest.raises(ValueError):
        save_image(torch.zeros(2, 4, 4), tmp_path / "x.png")
    with pytest.raises(ValueError, match="suffix"):
        save_image(torch.zeros(3, 4, 4), tmp_path / "x.unknownext")
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary left behind


def test_grayscale_becomes_three_equal_channels(tmp_path):
    g = _rgb()[..., 0]
    Image.fromarray(g).save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png")
    assert x.shape == (3, 16, 16) and torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    np.testing.assert_array_equal(_as_uint8(x)[..., 0], g)
    assert load_image(tmp_path / "g.png", channels=1).shape == (1, 16, 16)


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[0, :, 3] = 0  # transparent row
    rgba[1, :, 3] = 255  # opaque row
    rgba[2, :, 3] = 128  # half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    assert torch.allclose(x[:, 0], torch.ones(3, 4))  # white
    assert torch.allclose(x[:, 1], torch.tensor([1.0, -1.0, -1.0])[:, None].expand(3, 4))  # red
    assert torch.allclose(x[1:, 2], torch.full((2, 4), 127 / 255 * 2 - 1), atol=1e-6)  # half white
    la = Image.fromarray(rgba[..., [1, 3]], "LA")
    la.save(tmp_path / "la.png")
    assert torch.allclose(load_image(tmp_path / "la.png")[:, 0], torch.ones(3, 4))


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.info["transparency"] = 0
    p.save(tmp_path / "p.png", transparency=0)
    x = load_image(tmp_path / "p.png")
    assert torch.allclose(x[:, 0, 0], torch.ones(3))  # transparent index -> white
    assert torch.allclose(x[:, 1, 1], torch.tensor([-1.0, -1.0, 1.0]))  # blue


def test_cmyk_jpeg_converted_to_rgb(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)  # pure red ink
    x = load_image(tmp_path / "c.jpg")
    assert torch.allclose(x[:, 4, 4], torch.tensor([1.0, -1.0, -1.0]), atol=0.05)


def test_16bit_png_keeps_its_range(tmp_path):
    g16 = np.array([[0, 65535], [32768, 16384]], np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    x = load_image(tmp_path / "g16.png")
    expect = torch.tensor(g16.astype(np.float32) / 65535 * 2 - 1)
    assert torch.allclose(x[0], expect, atol=1e-6) and torch.equal(x[0], x[2])
    # 16-bit RGB (written with OpenCV, which stores BGR): read at 8 bits per channel
    import cv2

    rgb16 = np.zeros((2, 2, 3), np.uint16)
    rgb16[..., 2] = 65535  # red in BGR order
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16)
    assert torch.allclose(load_image(tmp_path / "c16.png")[:, 0, 0], torch.tensor([1.0, -1.0, -1.0]))


@pytest.mark.parametrize(
    "orientation,transpose",
    [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270), (3, Image.Transpose.ROTATE_180)],
)
def test_exif_orientation_is_applied(tmp_path, orientation, transpose):
    a = np.zeros((8, 12, 3), np.uint8)
    a[:2, :3] = 255  # a white block in the top-left corner, 8x12 (portrait is wrong)
    stored = Image.fromarray(a).transpose(transpose)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "r.jpg", quality=100, exif=exif.tobytes())
    x = load_image(tmp_path / "r.jpg")
    assert x.shape == (3, 8, 12)
    assert x[:, :2, :3].mean() > 0.8 and x[:, 4:, 6:].mean() < -0.8


@pytest.mark.parametrize("case", ["random_bytes", "text", "truncated", "empty"])
def test_broken_files_raise_bad_image_error_with_the_name(tmp_path, case):
    path = tmp_path / f"photo_{case}.jpg"
    if case == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(500))
    elif case == "text":
        path.write_text("this is not an image\n")
    elif case == "truncated":
        Image.fromarray(_rgb(64)).save(path, quality=95)
        path.write_bytes(path.read_bytes()[:600])
    else:
        path.write_bytes(b"")
    with pytest.raises(BadImageError) as info:
        load_image(path)
    assert isinstance(info.value, ValueError) and info.value.path == path
    assert path.name in str(info.value) and "ideface-prepare" in str(info.value)
    assert info.value.reason


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        load_image(tmp_path / "nope.jpg")


def test_size_resizes_with_antialiasing(tmp_path):
    stripes = np.zeros((32, 32), np.uint8)
    stripes[:, ::2] = 255
    Image.fromarray(stripes).save(tmp_path / "s.png")
    x = load_image(tmp_path / "s.png", size=8)
    assert x.shape == (3, 8, 8) and x.abs().max() < 0.05  # averaged to mid-gray, not aliased
    assert load_image(tmp_path / "s.png", size=(8, 16)).shape == (3, 8, 16)


def test_label_map_round_trip_and_range_check(tmp_path):
    labels = torch.randint(0, 19, (10, 12))
    save_label_map(labels, tmp_path / "l.png")
    back = load_label_map(tmp_path / "l.png", n_classes=19)
    assert back.dtype == torch.int64 and torch.equal(back, labels)
    save_label_map(torch.full((3, 3), 40), tmp_path / "bad.png")
    with pytest.raises(BadImageError, match="out of range"):
        load_label_map(tmp_path / "bad.png", n_classes=19)
    Image.fromarray(_rgb(4)).save(tmp_path / "rgb.png")
    with pytest.raises(BadImageError, match="single-channel"):
        load_label_map(tmp_path / "rgb.png")


def test_binary_mask_any_nonzero_value_and_rgb_storage(tmp_path):
    m = np.zeros((6, 6), np.uint8)
    m[1, 1], m[2, 2] = 255, 1
    Image.fromarray(m).save(tmp_path / "m.png")
    Image.fromarray(m).convert("RGB").save(tmp_path / "m_rgb.png")
    for name in ("m.png", "m_rgb.png"):
        got = load_binary_mask(tmp_path / name)
        assert got.dtype == torch.bool and got.sum() == 2 and got[1, 1] and got[2, 2]


def test_a_huge_photo_is_box_reduced_before_the_float_copy(tmp_path):
    """An 8-bit image 8x the requested size or more is averaged down in uint8 first: no float array at
    full size, and the same picture as the exact path up to a uint8 rounding."""
    import tracemalloc

    from ops.resize import resize_to

    yy, xx = np.mgrid[0:2048, 0:1536]
    smooth = np.stack([xx / 6, yy / 8, (xx + yy) / 14], axis=-1) % 256
    Image.fromarray(smooth.astype(np.uint8)).save(tmp_path / "huge.png")
    exact = resize_to(load_image(tmp_path / "huge.png")[None], (64, 48))[0].clamp(-1, 1)
    tracemalloc.start()
    fast = load_image(tmp_path / "huge.png", size=(64, 48))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert fast.shape == (3, 64, 48)
    assert peak < 2048 * 1536 * 3  # below the uint8 image itself; the float copy alone would be 4x that
    assert (fast - exact).abs().mean() < 2 / 255 and (fast - exact).abs().max() < 0.1
    # below the threshold nothing changes
    Image.fromarray(smooth[:256, :192].astype(np.uint8)).save(tmp_path / "small.png")
    small = load_image(tmp_path / "small.png")
    assert torch.equal(load_image(tmp_path / "small.png", size=64), resize_to(small[None], 64)[0].clamp(-1, 1))
