"""Person templates leave out the photos a pair fed to the model, and the identity-following rate says
whose face an output is closest to."""

import numpy as np
import pytest

from metrics.identity_following import PersonTemplates


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def gallery():
    # person 1: photos a, b, c; person 2: photos d, e; person 3: one photo f
    keys = ["a", "b", "c", "d", "e", "f"]
    persons = np.array([1, 1, 1, 2, 2, 3])
    emb = np.stack(
        [
            unit([1, 0, 0]),
            unit([1, 0.2, 0]),
            unit([0.9, -0.1, 0.1]),
            unit([0, 1, 0]),
            unit([0.1, 1, 0]),
            unit([0, 0, 1]),
        ]
    )
    return PersonTemplates(keys, persons, emb)


def test_templates_leave_out_the_fed_photos():
    t = gallery()
    assert np.allclose(t.template(1, ["a"]), unit(t.embeddings[1] + t.embeddings[2]))
    assert np.allclose(t.template(1, ["a", "b"]), t.embeddings[2])
    # keys of other people (and unknown keys) do not change a person's template
    assert np.allclose(t.template(1, ["d", "zzz"]), unit(t.embeddings[:3].sum(0)))
    assert t.template(3, ["f"]) is None and t.template(99, []) is None


def test_scores_follow_whose_face_the_output_is():
    t = gallery()
    towards_2, towards_1 = unit([0.05, 1, 0]), unit([1, 0.1, 0])
    s = t.scores(
        np.stack([towards_2, towards_1, towards_2, towards_2]),
        contour_keys=["a", "a", "a", "b"],
        contour_persons=[1, 1, 1, 1],
        identity_keys=["d", "d", "f", "c"],
        identity_persons=[2, 2, 3, 1],
    )
    assert s["identity_following"][:2].tolist() == [1.0, 0.0]
    # person 3 has no photo left besides the identity image; a same-person pair has no following figure
    assert np.isnan(s["identity_following"][2:]).all() and np.isnan(s["idsim_identity_person"][2])
    assert s["idsim_identity_person"][0] == pytest.approx(towards_2 @ unit(t.embeddings[4]))
    assert s["idsim_contour_person"][0] == pytest.approx(towards_2 @ unit(t.embeddings[1] + t.embeddings[2]))
    # same person: both templates leave out both fed photos (b and c), so they are photo a
    assert s["idsim_contour_person"][3] == pytest.approx(s["idsim_identity_person"][3])
    assert s["idsim_contour_person"][3] == pytest.approx(towards_2 @ t.embeddings[0])


def test_gallery_sizes_must_agree():
    with pytest.raises(ValueError, match="gallery sizes differ"):
        PersonTemplates(["a", "b"], np.array([1]), np.zeros((2, 3)))
