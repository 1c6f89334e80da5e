"""FFHQ/CelebA-HQ-style alignment of user photos, on the faces ``data.face_detection`` finds.

The training data (CelebA-HQ, FFHQ) was cropped by one rule on five landmarks (left eye, right eye,
nose, left and right mouth corner; Karras et al.'s CelebA-HQ script, reused for FFHQ)::

    eye_avg = (eye_l + eye_r) / 2,  eye_to_eye = eye_r - eye_l
    mouth_avg = (mouth_l + mouth_r) / 2,  eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - rot90(eye_to_mouth);  x *= max(2.0 * |eye_to_eye|, 1.8 * |eye_to_mouth|) / |x|
    y = rot90(x);  c = eye_avg + 0.1 * eye_to_mouth
    crop = the square with centre c and half-axes x, y  ->  the output image

The crop rule's points come from one of four aligners (``data.face_detection``: dlib, dlib's MMOD CNN,
insightface's SCRFD, and the LBP cascade that needs no install); which one ran is ``AlignResult.method``.

The mean face is insightface's ArcFace template (:data:`ARCFACE_TEMPLATE_112`, 5 points in a 112 crop).
Passing it through the crop rule gives :func:`alignment_template`, where an average face lands in
the aligned crop; at ``size`` = 256 (x, y in pixels)::

    left eye (97.21, 120.89)   right eye (158.79, 120.89)   nose (128.00, 156.09)
    mouth left (102.50, 192.00)   mouth right (153.50, 192.00)

i.e. eyes at y = 0.472 * size, 0.241 * size apart, mouth corners at y = 0.75 * size (the template's
eye-to-mouth / eye-to-eye ratio is 1.155, so the 1.8 * |eye_to_mouth| term sets the crop size).
Any upright face whose eye-to-mouth distance exceeds 2 / 1.8 of its eye distance (most adults)
lands the same way: the eye midpoint at (0.5, 0.472) * size and the mouth midpoint at (0.5, 0.75) *
size, only the eye spacing varying with the face. The cascade path maps the template's eyes onto the
estimated eyes, so its eyes land exactly on the template's eye positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data.face_detection import choose_detector, confident_faces, detect, dlib_points, pick_face, refine_cascade_box

# insightface's ArcFace 5-point template for 112x112 crops (x, y): eyes, nose tip, mouth corners.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
# Eye centres as fractions (x, y) of the refined cascade box (refine_cascade_box), measured on the
# photos shipped in the insightface wheel: Tom_Hanks_54745.png (an ArcFace-aligned crop, so its eyes
# are the template's) resized to 70-500 px gives (0.25, 0.42), (0.70, 0.42) with a spread of 0.02;
# the four frontal faces of t1.jpg, read by eye, about (0.29, 0.41), (0.67, 0.41).
CASCADE_EYES = ((0.265, 0.42), (0.69, 0.42))
DEFAULT_MIN_FACE = 48
# One line per aligner, for logs and result metadata.
ALIGNERS = {
    "dlib": "dlib HOG detector + 68 landmarks (FFHQ's alignment)",
    "dlib-mmod": "dlib MMOD CNN detector + 68 landmarks (FFHQ's alignment)",
    "insightface": "insightface SCRFD 5 landmarks (buffalo_l)",
    "cascade": "LBP cascade box, eyes at fixed box fractions (no roll)",
    "aligned": "none: given as an aligned crop",
}


class FaceNotFoundError(ValueError):
    """No usable face in a photo; ``str(err)`` is one line naming the file and the reason."""


@dataclass
class AlignResult:
    """An aligned face and how it was found.

    image: (3, size, size) float in [-1, 1].
    n_faces: faces detected confidently (``data.face_detection.confident_faces``; 1 for ``aligned=True``).
    chosen_box: (x0, y0, x1, y1) of the face used, in source pixels (None when not detected).
    landmarks: (5, 2) source-pixel points fed to the crop rule (estimated ones for the cascade).
    matrix: (2, 3) affine map from source pixels to output pixels. method: the aligner, a key of
    :data:`ALIGNERS`. message: one line for the user (names the aligner; mentions other faces if any).
    """

    image: torch.Tensor
    n_faces: int
    chosen_box: tuple[float, float, float, float] | None
    landmarks: np.ndarray | None
    matrix: np.ndarray | None
    method: str
    message: str


def ffhq_transform(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The CelebA-HQ/FFHQ crop rule (module docstring) as a (2, 3) affine from source to output pixels.

    landmarks: (5, 2) x, y in order left eye, right eye, nose, left mouth corner, right mouth corner.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_avg = (lm[0] + lm[1]) / 2
    eye_to_eye = lm[1] - lm[0]
    eye_to_mouth = (lm[3] + lm[4]) / 2 - eye_avg
    x = eye_to_eye - _rot90(eye_to_mouth)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8) / np.hypot(*x)
    y = _rot90(x)
    c = eye_avg + eye_to_mouth * 0.1
    # Output pixel = size/2 + (size/2) * (coordinates of p - c along the unit half-axes).
    linear = (size / 2) * np.stack([x, y]) / np.dot(x, x)
    return np.concatenate([linear, (size / 2 - linear @ c)[:, None]], axis=1)


def _rot90(v: np.ndarray) -> np.ndarray:
    """(a, b) -> (-b, a): the rotation the crop rule uses (``flipud(v) * [-1, 1]``)."""
    return np.array([-v[1], v[0]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a (2, 3) affine matrix."""
    return np.asarray(points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]


def alignment_template(size: int = 256) -> np.ndarray:
    """Where the mean face's 5 points land in an aligned crop of ``size``: (5, 2) x, y in pixels."""
    return apply_affine(ffhq_transform(ARCFACE_TEMPLATE_112, size), ARCFACE_TEMPLATE_112)


def landmarks_from_eyes(eye_l: np.ndarray, eye_r: np.ndarray) -> np.ndarray:
    """Five points of the mean face placed by the similarity that maps its eyes onto these eyes: (5, 2)."""
    src = ARCFACE_TEMPLATE_112[:2]
    # Similarity as a complex affine map z -> a z + b, exact for two point pairs.
    zs = src[:, 0] + 1j * src[:, 1]
    zd = np.array([eye_l[0] + 1j * eye_l[1], eye_r[0] + 1j * eye_r[1]])
    a = (zd[1] - zd[0]) / (zs[1] - zs[0])
    b = zd[0] - a * zs[0]
    z = a * (ARCFACE_TEMPLATE_112[:, 0] + 1j * ARCFACE_TEMPLATE_112[:, 1]) + b
    return np.stack([z.real, z.imag], axis=1)


def load_rgb(image) -> np.ndarray:
    """A photo as (H, W, 3) uint8 RGB.

    ``image``: a path (read by ``data.images.load_image``: EXIF orientation, gray / palette / 16-bit
    converted, alpha composited on white), a PIL image (alpha composited on white too), a
    (3 or 1, H, W) float tensor in [-1, 1], or an (H, W) / (H, W, 3) uint8 array. Raises
    ``data.images.BadImageError`` (empty, corrupt or non-image files) or FileNotFoundError.
    """
    from PIL import Image

    from data.images import load_image, open_image, to_uint8

    if isinstance(image, (str, Path)):
        im = open_image(image)
        if im.mode in ("RGB", "L") and "transparency" not in im.info:
            # 8-bit without alpha: the same values as the float path, without a float copy of a large photo
            return np.ascontiguousarray(np.asarray(im.convert("RGB")))
        return to_uint8(load_image(image))
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"tensor images must be (3 or 1, H, W) in [-1, 1], got {tuple(image.shape)}")
        return to_uint8(image.expand(3, -1, -1))
    if isinstance(image, Image.Image):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, image.convert("RGBA")).convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"array images must be (H, W) or (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else arr)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [-1, 1]."""
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 127.5 - 1


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize (antialiased bicubic) to (size, size, 3) uint8."""
    from PIL import Image

    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = Image.fromarray(rgb[top : top + s, left : left + s])
    return np.asarray(square.resize((size, size), Image.BICUBIC))


def warp_face(rgb: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Resample the crop described by ``matrix`` (source -> output pixels): (size, size, 3) uint8.

    Large shrink factors first downsample by an integer factor with area averaging (as the FFHQ
    script does) so the bilinear warp does not alias; outside the photo is filled by reflection.
    """
    import cv2

    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    shrink = int(np.floor(1 / scale)) if scale < 0.5 else 1
    if shrink > 1:
        h, w = rgb.shape[:2]
        rgb = cv2.resize(rgb, (max(1, round(w / shrink)), max(1, round(h / shrink))), interpolation=cv2.INTER_AREA)
        matrix = np.concatenate([matrix[:, :2] * shrink, matrix[:, 2:]], axis=1)
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def cascade_landmarks(box: tuple[float, float, float, float]) -> np.ndarray:
    """The five crop-rule points (5, 2) estimated from a cascade face box (eyes at CASCADE_EYES)."""
    x0, y0, x1, y1 = box
    eyes = [np.array([x0 + fx * (x1 - x0), y0 + fy * (y1 - y0)]) for fx, fy in CASCADE_EYES]
    return landmarks_from_eyes(*eyes)


def align_face(
    image,
    size: int = 256,
    detector: str = "auto",
    weights_root=None,
    aligned: bool = False,
    min_face: int = DEFAULT_MIN_FACE,
) -> AlignResult:
    """Detect the largest face in a photo and crop it like CelebA-HQ/FFHQ.

    image: a path, PIL image or uint8 array (see :func:`load_rgb`). size: output side in pixels.
    detector: ``auto`` (dlib when installed, else insightface when the registry has ``buffalo_l``,
    else the cascade), or one of ``dlib``, ``dlib-mmod``, ``insightface``, ``cascade``. aligned: the
    photo is already an aligned face crop; it is only centre-cropped to a square and resized.
    min_face: smallest accepted face-box side in source pixels.
    Returns an :class:`AlignResult` with ``image`` (3, size, size) in [-1, 1]. Raises
    :class:`FaceNotFoundError` (no face, face too small), ``data.images.BadImageError`` (unreadable
    file), FileNotFoundError, or MissingWeightsError / DlibUnavailableError (a named aligner absent).
    """
    name = str(image) if isinstance(image, (str, Path)) else "the image"
    rgb = load_rgb(image)
    h, w = rgb.shape[:2]
    if aligned:
        note = "" if h == w else f" (centre-cropped from {w}x{h})"
        return AlignResult(
            to_tensor(resize_square(rgb, size)),
            1,
            None,
            None,
            None,
            "aligned",
            f"{name}: used as an aligned face{note}",
        )
    method, folder = choose_detector(detector, weights_root)
    faces = confident_faces(detect(rgb, method, folder))
    if not faces:
        hint = "; --detector dlib-mmod finds more poses" if method == "dlib" else ""
        raise FaceNotFoundError(
            f"{name}: no face found ({method} detector); use a frontal photo of one "
            f"face, or pass --aligned if it is already an aligned face crop{hint}"
        )
    box, _, landmarks = pick_face(faces)
    side = min(box[2] - box[0], box[3] - box[1])
    if side < min_face:
        raise FaceNotFoundError(
            f"{name}: the largest face is {side:.0f} px wide, below the {min_face} px "
            f"minimum; use a photo where the face is larger"
        )
    if method in ("dlib", "dlib-mmod"):
        from models import dlibface

        landmarks = dlib_points(dlibface.landmarks(rgb, box, 68)[0])
    elif landmarks is None:
        box = refine_cascade_box(rgb, box)
        landmarks = cascade_landmarks(box)
    matrix = ffhq_transform(landmarks, size)
    crop = warp_face(rgb, matrix, size)
    others = f"; {len(faces)} faces found, using the largest" if len(faces) > 1 else ""
    message = f"{name}: face at x={box[0]:.0f}..{box[2]:.0f}, y={box[1]:.0f}..{box[3]:.0f} ({method}){others}"
    return AlignResult(to_tensor(crop), len(faces), tuple(float(v) for v in box), landmarks, matrix, method, message)
