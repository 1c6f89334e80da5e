"""Face alignment on the real photos shipped in the insightface wheel, with the no-download cascade."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from data.align import (
    ARCFACE_TEMPLATE_112,
    FaceNotFoundError,
    align_face,
    alignment_template,
    apply_affine,
    choose_detector,
    detect_cascade,
    ffhq_transform,
)
from data.images import BadImageError

insightface = pytest.importorskip("insightface")
PHOTOS = os.path.join(os.path.dirname(insightface.__file__), "data", "images")
TOM = os.path.join(PHOTOS, "Tom_Hanks_54745.png")  # a 112x112 ArcFace-aligned crop
GROUP = os.path.join(PHOTOS, "t1.jpg")  # six people, four of them frontal
# The largest frontal face in t1.jpg (x0, y0, x1, y1), read off the photo by hand.
GROUP_LARGEST = (445, 270, 590, 415)


def tom_eyes(scale: float = 1.0, offset=(0.0, 0.0)) -> np.ndarray:
    """Tom Hanks' true eye centres: the crop is ArcFace-aligned, so they are the template's eyes."""
    return ARCFACE_TEMPLATE_112[:2] * scale + np.asarray(offset)


def eye_error(result, true_eyes: np.ndarray, size: int) -> float:
    """Largest distance, as a fraction of the crop side, between true eyes mapped into the crop
    and the template's eye positions."""
    mapped = apply_affine(result.matrix, true_eyes)
    return float(np.abs(mapped - alignment_template(size)[:2]).max() / size)


def iou(a, b) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return inter / (area(a) + area(b) - inter)


def test_template_values_and_scaling():
    t = alignment_template(256)
    np.testing.assert_allclose(t[:2], [[97.21, 120.89], [158.79, 120.89]], atol=0.01)
    np.testing.assert_allclose(t[3:, 1], [192.0, 192.0], atol=0.01)  # mouth at 3/4 of the height
    np.testing.assert_allclose(alignment_template(1024), 4 * t, atol=1e-6)


def test_crop_rule_is_a_similarity_invariant_to_moving_the_face():
    """Rotating, scaling and shifting the landmarks changes the matrix but not where they land."""
    rng = np.random.default_rng(0)
    lm = ARCFACE_TEMPLATE_112 + rng.normal(0, 2, size=(5, 2))
    angle, scale, shift = 0.4, 3.0, np.array([120.0, -40.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = lm @ rot.T + shift
    m = ffhq_transform(lm, 256)
    landed = apply_affine(ffhq_transform(moved, 256), moved)
    np.testing.assert_allclose(landed, apply_affine(m, lm), atol=1e-6)
    lin = m[:, :2]
    assert abs(lin[0, 0] - lin[1, 1]) < 1e-9 and abs(lin[0, 1] + lin[1, 0]) < 1e-9  # no shear


@pytest.mark.parametrize("side", [112, 300])
def test_cascade_puts_true_eyes_near_template(side):
    photo = Image.open(TOM).convert("RGB").resize((side, side), Image.BICUBIC)
    r = align_face(photo, size=128, detector="cascade")
    assert r.image.shape == (3, 128, 128) and r.image.min() >= -1 and r.image.max() <= 1
    assert r.method == "cascade" and r.n_faces == 1 and "faces found" not in r.message
    assert eye_error(r, tom_eyes(side / 112), 128) < 0.04


def test_aligned_crop_shows_the_face_at_the_warped_position():
    """The returned image is the photo resampled through ``matrix`` (checked on a bright marker)."""
    photo = np.asarray(Image.open(TOM).convert("RGB")).copy()
    x, y = (ARCFACE_TEMPLATE_112[2] + 0.5).astype(int)  # the nose tip
    photo[y - 2:y + 3, x - 2:x + 3] = (255, 0, 0)
    r = align_face(photo, size=256, detector="cascade")
    u, v = apply_affine(r.matrix, [[x, y]])[0].round().astype(int)
    assert r.image[0, v, u] > 0.8 and r.image[1, v, u] < -0.6


def test_several_faces_picks_largest_and_reports_count():
    r = align_face(GROUP, size=64, detector="cascade")
    boxes = detect_cascade(np.asarray(Image.open(GROUP).convert("RGB")))
    assert r.n_faces == len(boxes) >= 3
    assert f"{r.n_faces} faces found, using the largest" in r.message
    assert iou(r.chosen_box, GROUP_LARGEST) > 0.6


def test_aligned_flag_only_resizes():
    ramp = np.tile(np.linspace(0, 255, 90, dtype=np.uint8), (60, 1))  # no face at all
    r = align_face(ramp, size=32, aligned=True)
    assert r.method == "aligned" and r.image.shape == (3, 32, 32) and r.matrix is None
    assert "centre-cropped from 90x60" in r.message
    assert torch.equal(r.image[0], r.image[2]) and r.image[0, :, -1].mean() > r.image[0, :, 0].mean()


def test_grayscale_and_rgba_files_are_converted(tmp_path):
    gray = tmp_path / "gray.png"
    Image.open(TOM).convert("L").save(gray)
    r = align_face(gray, size=64, detector="cascade")
    assert r.image.shape == (3, 64, 64) and torch.equal(r.image[0], r.image[1])

    rgba = Image.new("RGBA", (200, 200), (0, 0, 0, 0))  # transparent black around the photo
    rgba.paste(Image.open(TOM).convert("RGBA"), (44, 44))
    path = tmp_path / "rgba.png"
    rgba.save(path)
    r = align_face(path, size=64, detector="cascade")
    assert eye_error(r, tom_eyes(offset=(44, 44)), 64) < 0.04
    corner = align_face(path, size=64, aligned=True).image[:, 0, 0]
    assert torch.allclose(corner, torch.ones(3))  # transparency became white, not black


def test_bad_inputs_get_one_clear_line(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(BadImageError, match="notes.jpg"):
        align_face(text)
    with pytest.raises(BadImageError, match="empty"):
        align_face(empty)
    with pytest.raises(FileNotFoundError):
        align_face(tmp_path / "missing.png")

    ramp = np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (120, 1))
    ramp_path = tmp_path / "ramp.png"
    Image.fromarray(ramp).save(ramp_path)
    with pytest.raises(FaceNotFoundError, match=r"ramp.png: no face found \(cascade") as err:
        align_face(ramp_path, detector="cascade")
    assert "\n" not in str(err.value)

    small = Image.new("RGB", (200, 150), (90, 120, 150))
    small.paste(Image.open(TOM).convert("RGB").resize((50, 50), Image.BICUBIC), (70, 40))
    with pytest.raises(FaceNotFoundError, match=r"largest face is \d+ px wide, below the 48 px minimum"):
        align_face(small, detector="cascade")


def test_detector_choice_follows_the_weights_registry(tmp_path):
    from models.weights import MissingWeightsError

    assert choose_detector("auto", weights_root=tmp_path) == ("cascade", None)
    assert align_face(TOM, size=32, weights_root=tmp_path).method == "cascade"
    with pytest.raises(MissingWeightsError, match="buffalo_l"):
        align_face(TOM, detector="insightface", weights_root=tmp_path)
    (tmp_path / "buffalo_l").mkdir()  # present but without the detector: an error, not a silent fallback
    assert choose_detector("auto", weights_root=tmp_path) == ("insightface", tmp_path / "buffalo_l")
    with pytest.raises(MissingWeightsError, match="no insightface face-detection model"):
        align_face(TOM, weights_root=tmp_path)
    with pytest.raises(ValueError, match="unknown detector 'dlib'"):
        align_face(TOM, detector="dlib")
