"""Where the face is in a photo, and the five points of ``data.align``'s crop rule (left eye, right eye, nose,
left and right mouth corner), from one of four aligners, tried in this order by ``detector="auto"``:

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
  only: the eyes are placed at fixed fractions of the box (``data.align.CASCADE_EYES``), and the other
  three points follow from the mean face (``data.align.cascade_landmarks``). It finds roughly upright
  frontal faces only and measures no roll (the estimated eyes are level, so a tilted head stays tilted in the crop).

Which one ran is ``data.align.AlignResult.method``. Several faces: the largest of the confidently detected ones
is used (:func:`pick_face`): dlib's HOG detector also finds the mission badge on the astronaut's suit
(scikit-image's ``astronaut``), at a score of 0.12 against 1.16 for her face and with a box as large.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

# The cascade runs on a copy whose longer side is at most this (detection time grows with area).
CASCADE_MAX_SIDE = 640
# Overlapping windows needed to accept a face: skimage's default (4) fires on hands and lamps in t1.jpg.
CASCADE_MIN_NEIGHBOURS = 6
# Choosing among several faces (pick_face): faces scoring under this fraction of the best detector
# score are left out, and faces of at least NEAR_LARGEST of the largest one's box area compete on score.
CONFIDENT = 0.5
NEAR_LARGEST = 0.8
DETECTORS = ("auto", "dlib", "dlib-mmod", "insightface", "cascade")

# dlib's 68-point layout (iBUG 300-W): the FFHQ script's five points.
DLIB_EYE_LEFT, DLIB_EYE_RIGHT = slice(36, 42), slice(42, 48)
DLIB_NOSE, DLIB_MOUTH_LEFT, DLIB_MOUTH_RIGHT = 30, 48, 54


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


def detect(
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
