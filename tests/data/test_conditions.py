"""Contour transforms: LR, label map (merge, one-hot, colours) and sketch."""

import numpy as np
import pytest
import torch
from PIL import Image

from data.conditions import (
    CELEBAMASK_CLASSES,
    MASK_PALETTE,
    colorize_mask,
    condition_channels,
    lr_contour,
    lr_downsample,
    make_condition,
    merge_mask,
    one_hot,
    xdog_sketch,
)
from ops.resize import bicubic_downsample, upsample_bicubic

SPEC_ORDER = (
    "background skin nose eye_g l_eye r_eye l_brow r_brow l_ear r_ear mouth u_lip l_lip hair hat "
    "ear_r neck_l neck cloth"
).split()


def _face(n=64, seed=0):
    """A smooth synthetic face-like image (3, n, n) in [-1, 1]: a light disk with dark eyes."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    g = torch.Generator().manual_seed(seed)
    img = torch.full((3, n, n), -0.6) + 0.05 * torch.randn(3, n, n, generator=g)
    img[:, xx**2 + yy**2 < 0.6] = 0.7
    for ex in (-0.3, 0.3):
        img[:, (xx - ex) ** 2 + (yy + 0.2) ** 2 < 0.01] = -0.9
    return img.clamp(-1, 1)


def test_class_order_is_celebamask_hq():
    assert CELEBAMASK_CLASSES == tuple(SPEC_ORDER) and len(CELEBAMASK_CLASSES) == 19
    assert MASK_PALETTE.shape == (19, 3) and len({tuple(c) for c in MASK_PALETTE.tolist()}) == 19


def test_condition_channels_and_factory():
    assert [condition_channels(n) for n in ("lr", "mask", "sketch")] == [3, 19, 1]
    with pytest.raises(ValueError, match="lr, mask, sketch"):
        condition_channels("depth")
    with pytest.raises(ValueError):
        make_condition("depth")
    img = _face()
    labels = torch.randint(0, 19, (64, 64))
    for name in ("lr", "mask", "sketch"):
        cond = make_condition(name, out_size=32, lr_size=8)
        out = cond(img, labels=labels)
        assert out.shape == (condition_channels(name), 32, 32) == (cond.channels, 32, 32)
        assert out.dtype == torch.float32 and out.min() >= -1 and out.max() <= 1


def test_lr_contour_is_bicubic_down_then_up_and_deterministic():
    img = _face(128)
    c = lr_contour(img, lr_size=8, out_size=64)
    assert c.shape == (3, 64, 64) and c.min() >= -1 and c.max() <= 1
    assert torch.equal(c, lr_contour(img, lr_size=8, out_size=64))
    expect = upsample_bicubic(bicubic_downsample(img[None], 16).clamp(-1, 1), 64).clamp(-1, 1)[0]
    assert torch.equal(c, expect)
    assert torch.equal(lr_downsample(img, 8), bicubic_downsample(img[None], 16)[0].clamp(-1, 1))
    # batched == one by one
    batch = torch.stack([img, _face(128, seed=1)])
    assert torch.allclose(lr_contour(batch, 8, 64)[1], lr_contour(batch[1], 8, 64), atol=1e-6)


def test_lr_contour_keeps_only_what_the_lr_image_holds():
    a, b = _face(128, seed=0), _face(128, seed=1)  # differ only in fine noise
    assert (a - b).abs().mean() > 0.03
    ca, cb = lr_contour(a, 8, 64), lr_contour(b, 8, 64)
    assert (ca - cb).abs().mean() < 0.01  # the noise is gone at 8x8: contours nearly identical


def test_lr_contour_non_integer_factor():
    c = lr_contour(_face(100), lr_size=32, out_size=64)
    assert c.shape == (3, 64, 64) and c.min() >= -1 and c.max() <= 1


def _parts(n=8):
    hair = torch.zeros(n, n, dtype=torch.bool)
    hair[:3] = True
    hat = torch.zeros(n, n, dtype=torch.bool)
    hat[:2, 2:6] = True
    skin = torch.zeros(n, n, dtype=torch.bool)
    skin[2:7, 1:7] = True
    nose = torch.zeros(n, n, dtype=torch.bool)
    nose[4, 4] = True
    return {"hat": hat, "nose": nose, "hair": hair, "skin": skin}  # deliberately not in class order


def test_merge_mask_paints_later_classes_over_earlier():
    parts = _parts()
    labels = merge_mask(parts)
    idx = {name: CELEBAMASK_CLASSES.index(name) for name in parts}
    assert labels.dtype == torch.int64 and labels.shape == (8, 8)
    assert (labels[:2, 2:6] == idx["hat"]).all()  # hat (14) over hair (13)
    assert labels[0, 0] == idx["hair"]
    assert labels[2, 3] == idx["hair"]  # hair (13) over skin (1) on row 2
    assert labels[4, 4] == idx["nose"] and labels[5, 5] == idx["skin"]
    assert labels[7, 0] == 0  # uncovered: background
    # mapping order does not matter
    assert torch.equal(merge_mask(dict(reversed(list(parts.items())))), labels)


def test_merge_mask_from_files_resizing_and_errors(tmp_path):
    parts = _parts()
    paths = {}
    for name, m in parts.items():
        paths[name] = tmp_path / f"00001_{name}.png"
        Image.fromarray(m.numpy().astype(np.uint8) * 255).save(paths[name])
    assert torch.equal(merge_mask(paths), merge_mask(parts))
    half = merge_mask(parts, size=4)
    assert half.shape == (4, 4) and torch.equal(half, merge_mask(parts)[::2, ::2])  # nearest
    with pytest.raises(ValueError, match="unknown mask classes"):
        merge_mask({"beard": parts["hair"]})
    with pytest.raises(ValueError, match="size="):
        merge_mask({"skin": parts["skin"], "hair": torch.zeros(4, 4, dtype=torch.bool)})
    with pytest.raises(ValueError):
        merge_mask({})


def test_one_hot_is_an_exact_indicator():
    labels = torch.randint(0, 19, (2, 5, 7))
    oh = one_hot(labels)
    assert oh.shape == (2, 19, 5, 7) and oh.dtype == torch.float32
    assert set(oh.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(oh.sum(1), torch.ones(2, 5, 7)) and torch.equal(oh.argmax(1), labels)
    assert one_hot(labels[0]).shape == (19, 5, 7)
    for bad in (torch.tensor([[19]]), torch.tensor([[-1]])):
        with pytest.raises(ValueError, match=r"\[0, 19\)"):
            one_hot(bad)
    with pytest.raises(ValueError):
        one_hot(labels.float())


def test_mask_condition_resizes_by_nearest_and_one_hots():
    labels = merge_mask(_parts(16))
    out = make_condition("mask", out_size=8)(labels=labels)
    assert out.shape == (19, 8, 8) and torch.equal(out.argmax(0), labels[::2, ::2])
    with pytest.raises(ValueError, match="label map"):
        make_condition("mask", out_size=8)(_face())


def test_colorize_mask_uses_the_fixed_palette():
    labels = torch.arange(19).view(1, 19).expand(3, 19)
    rgb = colorize_mask(labels)
    assert rgb.shape == (3, 3, 19) and rgb.min() >= -1 and rgb.max() <= 1
    assert torch.allclose(rgb[:, 0, 0], torch.tensor([-1.0, -1.0, -1.0]))  # background black
    assert torch.equal(torch.round((rgb + 1) * 127.5).to(torch.uint8)[:, 0].T, MASK_PALETTE)
    assert colorize_mask(labels[None]).shape == (1, 3, 3, 19)


def test_xdog_sketch_lines_on_white():
    img = _face(64)
    sk = xdog_sketch(img)
    assert sk.shape == (1, 64, 64) and sk.min() >= -1 and sk.max() <= 1
    assert torch.equal(sk, xdog_sketch(img))
    flat = xdog_sketch(torch.full((3, 32, 32), -0.3))
    assert torch.equal(flat, torch.ones(1, 32, 32))  # no edges: blank white paper, any brightness
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    r = (xx**2 + yy**2).sqrt()
    assert (sk[0][(r - 0.77).abs() < 0.06] < 0).float().mean() > 0.4  # ink along the face outline
    assert (sk[0][r < 0.5] > 0.9).float().mean() > 0.8  # mostly white inside, apart from the eyes
    assert (sk > 0.99).float().mean() > 0.6
    assert xdog_sketch(img[None].expand(2, -1, -1, -1)).shape == (2, 1, 64, 64)


def test_sketch_condition_prefers_a_given_sketch():
    cond = make_condition("sketch", out_size=32)
    given = -torch.ones(1, 64, 64)
    assert torch.equal(cond(_face(), sketch=given), -torch.ones(1, 32, 32))
    computed = cond(_face())
    assert torch.equal(computed, xdog_sketch(lr_downsample(_face(), 32)))
    with pytest.raises(ValueError, match="sketch"):
        cond()


def test_contour_to_rgb_for_each_modality():
    from data.conditions import colorize_mask, contour_to_rgb

    lr = torch.rand(2, 3, 8, 8) * 2 - 1
    assert contour_to_rgb(lr) is lr
    sketch = torch.rand(2, 1, 8, 8)
    assert torch.equal(contour_to_rgb(sketch), sketch.expand(-1, 3, -1, -1))
    labels = torch.randint(0, 19, (2, 8, 8))
    one_hot = torch.nn.functional.one_hot(labels, 19).permute(0, 3, 1, 2).float()
    assert torch.equal(contour_to_rgb(one_hot), colorize_mask(labels).float())
