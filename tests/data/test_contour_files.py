"""Contour files in the ecosystem's formats: index and colour-coded masks, JPEG sketches, LR images of any size."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from data.conditions import colorize_mask, xdog_sketch
from data.contour_files import (
    CELEBAMASK_HQ_PALETTE,
    MAX_OFF_PALETTE,
    read_label_file,
    read_lr_file,
    read_sketch_file,
)
from data.images import BadImageError, to_uint8
from ops.resize import resize_to


def face_labels(size: int = 512) -> np.ndarray:
    """A face-like CelebAMask-HQ label map (uint8, values 0-17, as pSp's input_mask.png): skin, hair,
    eyes, brows, nose, lips, neck, cloth, ears on background."""
    y, x = np.mgrid[0:size, 0:size] / size
    lab = np.zeros((size, size), np.uint8)
    lab[(x - 0.5) ** 2 / 0.09 + (y - 0.45) ** 2 / 0.16 < 1] = 1  # skin
    lab[((x - 0.5) ** 2 + (y - 0.3) ** 2 < 0.1) & (y < 0.3)] = 13  # hair
    for cx, eye, brow, ear, ex in ((0.4, 4, 6, 8, 0.2), (0.6, 5, 7, 9, 0.8)):
        lab[(x - cx) ** 2 + (y - 0.42) ** 2 < 0.0012] = eye
        lab[(abs(x - cx) < 0.06) & (abs(y - 0.36) < 0.012)] = brow
        lab[(x - ex) ** 2 / 0.002 + (y - 0.47) ** 2 / 0.006 < 1] = ear
    lab[(abs(x - 0.5) < 0.03) & (y > 0.45) & (y < 0.56)] = 2  # nose
    lab[(abs(x - 0.5) < 0.08) & (abs(y - 0.63) < 0.012)] = 11  # upper lip
    lab[(abs(x - 0.5) < 0.07) & (abs(y - 0.655) < 0.012)] = 12  # lower lip
    lab[(abs(x - 0.5) < 0.12) & (y > 0.8)] = 17  # neck (the highest class in pSp's example file)
    return lab


def test_single_channel_index_png_any_size(tmp_path):
    lab = face_labels(512)
    assert lab.max() == 17
    Image.fromarray(lab, mode="L").save(tmp_path / "input_mask.png")
    assert torch.equal(read_label_file(tmp_path / "input_mask.png"), torch.from_numpy(lab.astype(np.int64)))
    small = face_labels(100)
    Image.fromarray(small.astype(np.uint16) * 1).save(tmp_path / "sixteen.png")  # a 16-bit index PNG
    assert torch.equal(read_label_file(tmp_path / "sixteen.png"), torch.from_numpy(small.astype(np.int64)))
    Image.fromarray(np.repeat(small[..., None], 3, 2)).save(tmp_path / "as_rgb.png")  # indices saved as RGB
    assert torch.equal(read_label_file(tmp_path / "as_rgb.png"), torch.from_numpy(small.astype(np.int64)))


def test_colour_coded_celebamask_hq_mask_maps_back_to_indices(tmp_path):
    lab = face_labels(512)
    Image.fromarray(CELEBAMASK_HQ_PALETTE[lab]).save(tmp_path / "colour.png")
    assert torch.equal(read_label_file(tmp_path / "colour.png"), torch.from_numpy(lab.astype(np.int64)))
    # Resized with a smooth filter: edges blend two colours, most still decode to the right class.
    Image.fromarray(CELEBAMASK_HQ_PALETTE[lab]).resize((300, 300), Image.BILINEAR).save(tmp_path / "small.png")
    got = read_label_file(tmp_path / "small.png")
    nearest = F.interpolate(torch.from_numpy(lab)[None, None].float(), size=(300, 300), mode="nearest")[0, 0]
    assert (got == nearest.long()).float().mean() > 0.97
    # And this project's own display colours (what colorize_mask and the grids draw).
    shown = to_uint8(colorize_mask(torch.from_numpy(lab.astype(np.int64))))
    Image.fromarray(shown).save(tmp_path / "ideface.png")
    assert torch.equal(read_label_file(tmp_path / "ideface.png"), torch.from_numpy(lab.astype(np.int64)))


def _astronaut(size: int) -> torch.Tensor:
    """scikit-image's astronaut photo resized to (3, size, size) in [-1, 1]."""
    from skimage import data

    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 127.5 - 1
    return resize_to(photo, size)[0].clamp(-1, 1)


def test_wrong_label_files_are_one_line_naming_the_file(tmp_path):
    cases = {}
    Image.fromarray(np.full((64, 64), 40, np.uint8)).save(tmp_path / "range.png")
    cases["range.png"] = "label 40 out of range for 19 classes"
    Image.fromarray(to_uint8(_astronaut(64))).save(tmp_path / "photo.png")
    cases["photo.png"] = "no colour of the CelebAMask-HQ palette"
    rgba = np.concatenate([CELEBAMASK_HQ_PALETTE[face_labels(64)], np.full((64, 64, 1), 128, np.uint8)], 2)
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    cases["alpha.png"] = "transparent pixels"
    Image.new("CMYK", (64, 64)).save(tmp_path / "cmyk.jpg")
    cases["cmyk.jpg"] = "colour mode CMYK is not a label map"
    Image.fromarray(face_labels(64)[:, :48]).save(tmp_path / "wide.png")
    cases["wide.png"] = "is 48x64; contours are square"
    (tmp_path / "empty.png").write_bytes(b"")
    cases["empty.png"] = "empty file"
    for name, phrase in cases.items():
        with pytest.raises(BadImageError) as err:
            read_label_file(tmp_path / name)
        assert name in str(err.value) and phrase in str(err.value) and "\n" not in str(err.value), name


def test_palette_tolerance_limit(tmp_path):
    """A colour mask with more than MAX_OFF_PALETTE of its pixels off the palette is refused."""
    rgb = CELEBAMASK_HQ_PALETTE[face_labels(100)].copy()
    rgb[: int(100 * 2 * MAX_OFF_PALETTE)] = (128, 64, 32)  # 4% of the rows in a colour of no class
    Image.fromarray(rgb).save(tmp_path / "off.png")
    with pytest.raises(BadImageError, match="4% of its pixels"):
        read_label_file(tmp_path / "off.png")


@pytest.mark.parametrize("quality,white", [(75, 0.99), (40, 0.95)])
def test_jpeg_sketch_paper_is_white_again(tmp_path, quality, white):
    """A real XDoG sketch (of scikit-image's astronaut) saved as JPEG reads back close to its PNG."""
    sketch = to_uint8(xdog_sketch(_astronaut(512))[0])
    Image.fromarray(sketch).save(tmp_path / "s.png")
    Image.fromarray(sketch).save(tmp_path / "s.jpg", quality=quality)
    png, jpg = read_sketch_file(tmp_path / "s.png"), read_sketch_file(tmp_path / "s.jpg")
    assert png.shape == jpg.shape == (1, 512, 512)
    paper = png == 1
    assert (jpg[paper] == 1).float().mean() > white  # compression noise on the paper snapped to white
    raw = torch.from_numpy(np.array(Image.open(tmp_path / "s.jpg").convert("L"))).float() / 127.5 - 1
    small = lambda x: resize_to(x[None], 256)[0]
    assert (small(jpg) - small(png)).abs().mean() < (small(raw[None]) - small(png)).abs().mean()


@pytest.mark.parametrize("side", [16, 32, 45, 1024])
def test_lr_images_of_any_size(tmp_path, side):
    from data.conditions import lr_contour

    Image.fromarray(to_uint8(_astronaut(side))).save(tmp_path / "lr.png")
    image = read_lr_file(tmp_path / "lr.png")
    assert image.shape == (3, side, side)
    contour = lr_contour(image, 32, 256)
    reference = lr_contour(_astronaut(1024), 32, 256)
    # Below the model's LR size (32) detail is lost for good; at or above it the contour is the 1024 photo's.
    assert contour.shape == (3, 256, 256) and (contour - reference).abs().mean() < (0.15 if side < 32 else 0.03)
