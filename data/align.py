"""Face detection and FFHQ/CelebA-HQ-style alignment of user photos.

The training data (CelebA-HQ, FFHQ) was cropped by one rule on five landmarks (left eye, right eye,
nose, left and right mouth corner; Karras et al.'s CelebA-HQ script, reused for FFHQ)::

    eye_avg = (eye_l + eye_r) / 2,  eye_to_eye = eye_r - eye_l
    mouth_avg = (mouth_l + mouth_r) / 2,  eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - rot90(eye_to_mouth);  x *= max(2.0 * |eye_to_eye|, 1.8 * |eye_to_mouth|) / |x|
    y = rot90(x);  c = eye_avg + 0.1 * eye_to_mouth
    crop = the square with centre c and half-axes x, y  ->  the output image

The crop rule's points come from one of four aligners, tried in this order by ``detector="auto"``:

- ``dlib`` (the default when installed: ``pip install -e ".[align]"``, see ``models.dlibface``):
  dlib's HOG face detector and its 68-point landmarks, reduced to the five points exactly as NVlabs'
  FFHQ script and pSp/ReStyle/e4e's ``align_all_parallel`` do (:func:`dlib_points`: eyes are the
  means of points 36-41 and 42-47, the mouth corners points 48 and 54, the nose point 30). This is
  the alignment that made FFHQ; it measures roll, so a tilted head comes out upright (on the
  astronaut photo rotated by -20 to +30 degrees, i.e. heads tilted by up to about 25 degrees either
  way, the crop's roll is right within 0.5 degrees; past that the landmarks, fitted inside an
  upright HOG box, underestimate it).
  ``dlib-mmod`` uses dlib's CNN (MMOD) detector instead of HOG: more poses, about 10 s a photo on a CPU;
- ``insightface``: SCRFD from the ``buffalo_l`` folder of the weights registry (``FaceAnalysis`` with
  only the detection module), which predicts the five landmarks directly;
- ``cascade`` (the last resort, no install or download): scikit-image's bundled copy of OpenCV's
  LBP frontal-face cascade. OpenCV 5 no longer ships Haar cascades (``cv2.CascadeClassifier`` and
  ``cv2.data`` files are gone), so this is the detector that needs nothing. It gives a face box
  only: the eyes are placed at fixed fractions of the box (:data:`CASCADE_EYES`), and the other
  three points follow from the mean face below. It finds roughly upright frontal faces only and
  measures no roll (the estimated eyes are level, so a tilted head stays tilted in the crop).

Which one ran is ``AlignResult.method``. Several faces: the largest of the confidently detected ones
is used (:func:`pick_face`): dlib's HOG detector also finds the mission badge on the astronaut's suit
(scikit-image's ``astronaut``), at a score of 0.12 against 1.16 for her face and with a box as large.

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

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# insightface's ArcFace 5-point template for 112x112 crops (x, y): eyes, nose tip, mouth corners.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
# Eye centres as fractions (x, y) of the refined cascade box (refine_cascade_box), measured on the
# photos shipped in the insightface wheel: Tom_Hanks_54745.png (an ArcFace-aligned crop, so its eyes
# are the template's) resized to 70-500 px gives (0.25, 0.42), (0.70, 0.42) with a spread of 0.02;
# the four frontal faces of t1.jpg, read by eye, about (0.29, 0.41), (0.67, 0.41).
CASCADE_EYES = ((0.265, 0.42), (0.69, 0.42))
# The cascade runs on a copy whose longer side is at most this (detection time grows with area).
CASCADE_MAX_SIDE = 640
# Overlapping windows needed to accept a face: skimage's default (4) fires on hands and lamps in t1.jpg.
CASCADE_MIN_NEIGHBOURS = 6
DEFAULT_MIN_FACE = 48
# Choosing among several faces (pick_face): faces scoring under this fraction of the best detector
# score are left out, and faces of at least NEAR_LARGEST of the largest one's box area compete on score.
CONFIDENT = 0.5
NEAR_LARGEST = 0.8
DETECTORS = ("auto", "dlib", "dlib-mmod", "insightface", "cascade")
# One line per aligner, for logs and result metadata.
ALIGNERS = {
    "dlib": "dlib HOG detector + 68 landmarks (FFHQ's alignment)",
    "dlib-mmod": "dlib MMOD CNN detector + 68 landmarks (FFHQ's alignment)",
    "insightface": "insightface SCRFD 5 landmarks (buffalo_l)",
    "cascade": "LBP cascade box, eyes at fixed box fractions (no roll)",
    "aligned": "none: given as an aligned crop",
}
# dlib's 68-point layout (iBUG 300-W): the FFHQ script's five points.
DLIB_EYE_LEFT, DLIB_EYE_RIGHT = slice(36, 42), slice(42, 48)
DLIB_NOSE, DLIB_MOUTH_LEFT, DLIB_MOUTH_RIGHT = 30, 48, 54


class FaceNotFoundError(ValueError):
    """No usable face in a photo; ``str(err)`` is one line naming the file and the reason."""


@dataclass
class AlignResult:
    """An aligned face and how it was found.

    image: (3, size, size) float in [-1, 1]. n_faces: faces detected confidently (:func:`confident_faces`;
    1 for ``aligned=True``).
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


@functools.lru_cache(maxsize=1)
def _cascade():
    from skimage import data as skdata
    from skimage.feature import Cascade

    return Cascade(skdata.lbp_frontal_face_cascade_filename())


def _merge_boxes(boxes: list[tuple[float, float, float, float]]) -> list[tuple[float, float, float, float]]:
    """Drop boxes mostly inside a larger one (the cascade's duplicates of one face at two scales)."""
    kept: list[tuple[float, float, float, float]] = []
    for box in sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True):
        x0, y0, x1, y1 = box
        area = (x1 - x0) * (y1 - y0)
        if all(
            max(0, min(x1, k[2]) - max(x0, k[0])) * max(0, min(y1, k[3]) - max(y0, k[1])) < 0.5 * area for k in kept
        ):
            kept.append(box)
    return kept


def detect_cascade(rgb: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Frontal-face boxes (x0, y0, x1, y1) in source pixels from the LBP cascade, duplicates merged."""
    from PIL import Image

    h, w = rgb.shape[:2]
    k = min(1.0, CASCADE_MAX_SIDE / max(h, w))
    gray = Image.fromarray(rgb).convert("L")
    if k < 1:
        gray = gray.resize((max(1, round(w * k)), max(1, round(h * k))), Image.BILINEAR)
    g = np.asarray(gray)
    found = _cascade().detect_multi_scale(
        img=g,
        scale_factor=1.2,
        step_ratio=1,
        min_size=(20, 20),
        max_size=g.shape,
        min_neighbor_number=CASCADE_MIN_NEIGHBOURS,
    )
    return _merge_boxes(
        [(d["c"] / k, d["r"] / k, (d["c"] + d["width"]) / k, (d["r"] + d["height"]) / k) for d in found]
    )


def refine_cascade_box(rgb: np.ndarray, box: tuple[float, float, float, float]) -> tuple[float, ...]:
    """Re-detect one face with the face rescaled to 64, 80 and 96 px and average the boxes.

    The whole-image pass uses coarse scale steps; its box side and position jitter by about 10%
    with the face's size in pixels, which would move the estimated eyes. Averaging detections at
    normalised scales cuts that to about 2% (measured on Tom_Hanks_54745.png resized to 70-500 px).
    """
    from PIL import Image

    gray = Image.fromarray(rgb).convert("L")
    x0, y0, x1, y1 = box
    side, cx, cy = x1 - x0, (x0 + x1) / 2, (y0 + y1) / 2
    half = 0.8 * side
    boxes = []
    for target in (64, 80, 96):
        k = target / side
        n = round(2 * half * k)
        # Output pixel (u, v) samples source (cx - half + u / k, cy - half + v / k).
        region = np.asarray(
            gray.transform((n, n), Image.AFFINE, (1 / k, 0, cx - half, 0, 1 / k, cy - half), Image.BILINEAR)
        )
        found = _cascade().detect_multi_scale(
            img=region, scale_factor=1.1, step_ratio=1, min_size=(20, 20), max_size=region.shape, min_neighbor_number=4
        )
        off = {
            i: np.hypot(d["c"] + d["width"] / 2 - half * k, d["r"] + d["height"] / 2 - half * k)
            for i, d in enumerate(found)
        }
        near = [i for i, d in enumerate(found) if 0.7 < d["width"] / target < 1.4 and off[i] < 0.25 * target]
        if near:
            d = found[min(near, key=off.get)]
            boxes.append(
                (
                    cx - half + d["c"] / k,
                    cy - half + d["r"] / k,
                    cx - half + (d["c"] + d["width"]) / k,
                    cy - half + (d["r"] + d["height"]) / k,
                )
            )
    return tuple(np.mean(boxes, axis=0)) if boxes else box


def cascade_landmarks(box: tuple[float, float, float, float]) -> np.ndarray:
    """The five crop-rule points (5, 2) estimated from a cascade face box (eyes at CASCADE_EYES)."""
    x0, y0, x1, y1 = box
    eyes = [np.array([x0 + fx * (x1 - x0), y0 + fy * (y1 - y0)]) for fx, fy in CASCADE_EYES]
    return landmarks_from_eyes(*eyes)


@functools.lru_cache(maxsize=2)
def _face_analysis(folder: str):
    from insightface.app import FaceAnalysis

    from models.weights import MissingWeightsError

    # An absolute folder as ``name`` is used as is (insightface >= 2 checks for a directory; older
    # versions join it onto root, which keeps an absolute path), so nothing is ever downloaded.
    try:
        app = FaceAnalysis(name=folder, root=str(Path(folder).parent), allowed_modules=["detection"])
    except AssertionError:  # insightface's way of saying no detection model was found
        raise MissingWeightsError(
            f"{folder} holds no insightface face-detection model (buffalo_l's "
            "det_10g.onnx); unzip buffalo_l.zip there, or use detector='cascade'"
        ) from None
    app.prepare(ctx_id=0, det_size=(640, 640))
    return app


def detect_insightface(
    rgb: np.ndarray, folder: Path
) -> list[tuple[tuple[float, float, float, float], float, np.ndarray]]:
    """Faces by insightface's SCRFD (``buffalo_l``): a list of (box (x0, y0, x1, y1), score, landmarks (5, 2))."""
    app = _face_analysis(str(Path(folder).resolve()))
    faces = app.get(np.ascontiguousarray(rgb[:, :, ::-1]))
    return [
        (tuple(float(v) for v in f.bbox[:4]), float(f.det_score), np.asarray(f.kps, dtype=np.float64)) for f in faces
    ]


def _buffalo_folder(weights_root) -> Path:
    from models.weights import resolve

    return resolve("buffalo_l", root=weights_root)


def dlib_points(points68: np.ndarray) -> np.ndarray:
    """dlib's 68 landmarks (68, 2) -> the crop rule's five points (5, 2), as the FFHQ script takes them."""
    p = np.asarray(points68, dtype=np.float64)
    return np.stack(
        [p[DLIB_EYE_LEFT].mean(0), p[DLIB_EYE_RIGHT].mean(0), p[DLIB_NOSE], p[DLIB_MOUTH_LEFT], p[DLIB_MOUTH_RIGHT]]
    )


def choose_detector(detector: str = "auto", weights_root=None) -> tuple[str, Path | None]:
    """Resolve ``auto`` to (aligner, buffalo_l folder or None): ``dlib`` when dlib and its models are
    installed, else ``insightface`` when the registry has ``buffalo_l``, else ``cascade``.

    An aligner asked for by name must be there: ``dlib``/``dlib-mmod`` without the align extra raise
    ``models.dlibface.DlibUnavailableError``, ``insightface`` without the folder the registry's
    MissingWeightsError (both say how to get them).
    """
    from models import dlibface

    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    if detector == "cascade":
        return "cascade", None
    if detector in ("dlib", "dlib-mmod"):
        dlibface.require()
        return detector, None
    if detector == "insightface":
        return "insightface", _buffalo_folder(weights_root)
    if dlibface.available():
        return "dlib", None
    from models.weights import MissingWeightsError

    try:
        return "insightface", _buffalo_folder(weights_root)
    except MissingWeightsError:
        return "cascade", None


def _detect(
    rgb: np.ndarray, method: str, folder: Path | None
) -> list[tuple[tuple[float, ...], float, np.ndarray | None]]:
    """Faces as (box (x0, y0, x1, y1), detector score, (5, 2) crop-rule points or None) by ``method``."""
    if method == "insightface":
        return detect_insightface(rgb, folder)
    if method in ("dlib", "dlib-mmod"):
        from models import dlibface

        return [(box, score, None) for box, score in dlibface.detect(rgb, "hog" if method == "dlib" else "mmod")]
    return [(box, 0.0, None) for box in detect_cascade(rgb)]


def confident_faces(faces: list) -> list:
    """The ``(box, score, ...)`` tuples scoring at least :data:`CONFIDENT` of the best score."""
    best = max((f[1] for f in faces), default=0.0)
    return [f for f in faces if f[1] >= CONFIDENT * best]


def pick_face(faces: list) -> tuple:
    """The face to use from ``(box, score, ...)`` tuples: among :func:`confident_faces`, the largest
    box, where boxes of at least :data:`NEAR_LARGEST` of its area compete on score (then area)."""
    area = lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1])
    faces = confident_faces(faces)
    largest = max(area(f) for f in faces)
    return max(faces, key=lambda f: (area(f) >= NEAR_LARGEST * largest, f[1], area(f)))


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
    faces = confident_faces(_detect(rgb, method, folder))
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
