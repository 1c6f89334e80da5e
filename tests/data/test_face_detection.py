"""Which aligner runs, and which of several detected faces is used (``data.face_detection``)."""

import sys

import pytest

from data.face_detection import CONFIDENT, NEAR_LARGEST, choose_detector, confident_faces, pick_face


def test_auto_follows_dlib_then_the_weights_registry_then_the_cascade(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # dlib not installed: auto falls through to the registry
    assert choose_detector("auto", weights_root=tmp_path) == ("cascade", None)
    (tmp_path / "buffalo_l").mkdir()
    assert choose_detector("auto", weights_root=tmp_path) == ("insightface", tmp_path / "buffalo_l")
    assert choose_detector("cascade", weights_root=tmp_path) == ("cascade", None)
    with pytest.raises(ValueError, match="unknown detector 'haar'; choose one of auto, dlib"):
        choose_detector("haar")


def test_auto_prefers_dlib_when_installed(tmp_path):
    from models import dlibface

    if not dlibface.available():
        pytest.skip(f"dlib not installed ({dlibface.INSTALL})")
    (tmp_path / "buffalo_l").mkdir()  # dlib comes first even where buffalo_l is present
    assert choose_detector("auto", weights_root=tmp_path) == ("dlib", None)


def box(side: float, x: float = 0.0) -> tuple[float, float, float, float]:
    return (x, 0.0, x + side, side)


def test_weak_detections_are_left_out_and_near_largest_faces_compete_on_score():
    badge, face = (box(100), 0.12), (box(98, 200), 1.16)  # the astronaut's badge: as large, a tenth the score
    assert confident_faces([badge, face]) == [face] and pick_face([badge, face]) == face
    assert confident_faces([(box(10), CONFIDENT * 2.0), (box(5), 2.0)]) == [(box(10), 1.0), (box(5), 2.0)]
    big, near = (box(100), 1.0), (box(100 * NEAR_LARGEST**0.5 + 1, 300), 1.5)
    assert pick_face([big, near]) == near  # within NEAR_LARGEST of the largest area: the better score wins
    small = (box(100 * NEAR_LARGEST**0.5 - 5, 300), 1.5)
    assert pick_face([big, small]) == big  # clearly smaller: the largest wins despite its lower score
