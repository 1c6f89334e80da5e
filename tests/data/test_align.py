"""Face alignment on the real photos shipped in the insightface wheel, with the no-download cascade."""

import os
import sys

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
    ffhq_transform,
)
from data.face_detection import detect_cascade
from data.images import BadImageError, to_uint8

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
    photo[y - 2 : y + 3, x - 2 : x + 3] = (255, 0, 0)
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


def test_the_aligner_chosen_is_the_one_that_runs(tmp_path, monkeypatch):
    """align_face runs what choose_detector picks (tests/data/test_face_detection.py), with its errors."""
    from models.weights import MissingWeightsError

    monkeypatch.setitem(sys.modules, "dlib", None)  # dlib not installed: auto falls through to the registry
    assert align_face(TOM, size=32, weights_root=tmp_path).method == "cascade"
    with pytest.raises(MissingWeightsError, match="buffalo_l"):
        align_face(TOM, detector="insightface", weights_root=tmp_path)
    (tmp_path / "buffalo_l").mkdir()  # present but without the detector: an error, not a silent fallback
    with pytest.raises(MissingWeightsError, match="no insightface face-detection model"):
        align_face(TOM, weights_root=tmp_path)
    with pytest.raises(ValueError, match="unknown detector 'haar'"):
        align_face(TOM, detector="haar")


# ---- dlib (the align extra): FFHQ's own alignment, on scikit-image's bundled astronaut photo -------------


def _dlib_ready():
    from models import dlibface

    if not dlibface.available():
        pytest.skip(f"dlib not installed ({dlibface.INSTALL})")


@pytest.fixture(scope="module")
def astronaut():
    """Eileen Collins' NASA portrait (512 x 512, unaligned, shipped inside scikit-image) as uint8 RGB."""
    from skimage import data

    return data.astronaut()


def dlib_five(rgb):
    """The five crop-rule points dlib finds on a photo (HOG detector, largest face, 68 landmarks)."""
    from data.face_detection import dlib_points, pick_face
    from models import dlibface

    box = pick_face(dlibface.detect(rgb))[0]
    return dlib_points(dlibface.landmarks(rgb, box)[0])


def roll_degrees(matrix) -> float:
    return float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))


def test_dlib_unavailable_is_one_line_with_the_install_command(monkeypatch):
    from models.dlibface import DlibUnavailableError
    from models.weights import MissingWeightsError

    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(DlibUnavailableError, match=r'pip install -e "\.\[align\]"') as err:
        align_face(TOM, detector="dlib")
    assert isinstance(err.value, MissingWeightsError) and "\n" not in str(err.value)


def test_dlib_aligns_the_astronaut_onto_the_ffhq_template(astronaut):
    """Landmarks found again on the aligned crop sit at the FFHQ template positions, and where the
    crop rule sent the photo's landmarks: re-aligning the crop is (nearly) the identity."""
    _dlib_ready()
    size = 256
    r = align_face(astronaut, size=size)
    assert r.method == "dlib" and "(dlib)" in r.message
    assert 160 < r.chosen_box[0] < 200 and 60 < r.chosen_box[1] < 100  # her face, not the suit's badge
    crop = to_uint8(r.image)
    found = dlib_five(crop)
    template = alignment_template(size)
    # Eyes and nose tip within 3 px of the mean-face template (her wide smile moves the mouth corners).
    assert np.abs(found[:3] - template[:3]).max() < 3.0, found - template
    assert abs(found[0, 1] - found[1, 1]) < 1.5  # eyes level: no roll left
    np.testing.assert_allclose(found, apply_affine(r.matrix, r.landmarks), atol=2.5)
    again = ffhq_transform(found, size)
    np.testing.assert_allclose(again[:, :2], np.eye(2), atol=0.02)
    np.testing.assert_allclose(again[:, 2], 0, atol=2.5)


@pytest.mark.parametrize("angle,scale", [(20, 0.7), (-20, 1.5)])
def test_dlib_measures_roll_and_scale(astronaut, angle, scale):
    """A rotated and rescaled copy of the photo aligns to the same crop."""
    import cv2

    _dlib_ready()
    face = (220, 120)  # about the face centre: the crop stays inside the rotated canvas
    side = round(600 * scale)
    m = cv2.getRotationMatrix2D(face, angle, scale)
    m[:, 2] += np.array([side / 2, side / 2]) - face
    # A plain grey surround: reflected borders would add mirrored copies of her face.
    moved = cv2.warpAffine(
        astronaut, m, (side, side), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128)
    )
    base, r = align_face(astronaut, size=256), align_face(moved, size=256)
    assert abs(roll_degrees(r.matrix) - roll_degrees(base.matrix) - angle) < 1.0
    # The photo's own landmarks, carried into the copy and through its crop, land where they did.
    carried = apply_affine(r.matrix, apply_affine(m, base.landmarks))
    np.testing.assert_allclose(carried, apply_affine(base.matrix, base.landmarks), atol=2.0)
    centre = (slice(None), slice(64, 192), slice(64, 192))
    assert (r.image[centre] - base.image[centre]).abs().mean() * 127.5 < 8.0


def test_cascade_cannot_remove_roll(astronaut):
    """The contrast that makes dlib the default: the cascade's crop keeps the photo's tilt."""
    import cv2

    m = cv2.getRotationMatrix2D((220, 120), 10, 1.0)  # at 12 degrees the cascade no longer finds her
    moved = cv2.warpAffine(astronaut, m, (512, 512), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    assert abs(roll_degrees(align_face(moved, size=128, detector="cascade").matrix)) < 0.5


def test_dlib_no_face_is_one_line(tmp_path):
    from skimage import data

    _dlib_ready()
    path = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(path)
    with pytest.raises(FaceNotFoundError, match=r"coffee.png: no face found \(dlib detector\)") as err:
        align_face(path)
    assert "\n" not in str(err.value) and "--detector dlib-mmod" in str(err.value)
