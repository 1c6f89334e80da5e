"""dlib's recogniser as the second identity judge, on real aligned faces (astronaut, insightface's t1.jpg)."""

import os

import numpy as np
import pytest
import torch

from metrics.dlib_idsim import SAME_PERSON_DISTANCE, DlibEmbedder, dlib_distance
from models import dlibface

insightface = pytest.importorskip("insightface")
GROUP = os.path.join(os.path.dirname(insightface.__file__), "data", "images", "t1.jpg")


@pytest.fixture(scope="module")
def faces():
    """The astronaut aligned at 256 and 1024, her mirror image, and the six people of t1.jpg aligned at 256."""
    from PIL import Image
    from skimage import data

    from data.align import align_face, ffhq_transform, to_tensor, warp_face
    from data.face_detection import dlib_points

    if not dlibface.available():
        pytest.skip(f"dlib not installed ({dlibface.INSTALL})")
    astro = data.astronaut()
    her = [align_face(astro, size=256).image, align_face(astro[:, ::-1].copy(), size=256).image]
    big = align_face(astro, size=1024).image
    group = np.asarray(Image.open(GROUP).convert("RGB"))
    others = [
        to_tensor(warp_face(group, ffhq_transform(dlib_points(dlibface.landmarks(group, box)[0]), 256), 256))
        for box, _ in dlibface.detect(group)
    ]
    assert len(others) == 6
    return torch.stack(her), big, torch.stack(others)


def test_same_person_close_other_people_far(faces):
    her, big, others = faces
    judge = DlibEmbedder()
    same = dlib_distance(her[:1], her[1:], judge)
    assert same.shape == (1,) and same.item() < SAME_PERSON_DISTANCE / 2  # her and her mirror image
    apart = dlib_distance(her[:1].expand(len(others), -1, -1, -1), others, judge)
    assert (apart > SAME_PERSON_DISTANCE).all()  # nobody in t1.jpg is her
    # The judge resizes to its own resolution: a 1024 crop scores as the 256 one.
    assert dlib_distance(her[:1], big[None], judge).item() < 0.06


def test_fixed_box_matches_a_detected_box(faces):
    """No detector runs on aligned faces: the fixed box gives the descriptor a detected box gives."""
    from data.images import to_uint8

    img = to_uint8(faces[0][0])
    box = dlibface.detect(img)[0][0]
    detected = dlibface.descriptor(img, dlibface.landmarks(img, box, points=5)[1])
    assert np.linalg.norm(detected - DlibEmbedder()(faces[0][:1])[0]) < 0.06
