"""What is behind the web demo's page (experiments.demo_backend): its functions on the shipped toy encoder
and on a tiny run without an IDSIM network."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from data.images import save_image, save_label_map, to_uint8
from experiments.demo_backend import (
    ALIGNED_LABEL,
    LABEL_MAP,
    LR_IMAGE,
    MAX_IDENTITIES,
    PHOTO_TO_LR,
    Demo,
    DemoError,
    Upload,
    max_steps,
)
from experiments.pipeline import load_pipeline
from tests.experiments.test_pipeline import make_tiny_run

from .conftest import uploads


def lines(err: pytest.ExceptionInfo) -> list[str]:
    return err.value.lines


def test_examples_are_the_toy_worlds_test_identities(toy):
    assert [row[0] for row in toy.examples.rows] == [PHOTO_TO_LR, PHOTO_TO_LR, LR_IMAGE]
    for mode, contour, *ids in toy.examples.rows:
        assert len(ids) == MAX_IDENTITIES and all(os.path.isfile(p) for p in [contour, *ids])
        # identity photo 1 is another photo of the contour's person; the others are other people
        _, person = toy.read_contour(mode, Upload.of(contour), aligned=True)
        who = [toy.read_identity(Upload.of(p), aligned=True)[2].label for p in ids]
        assert who[0] == person.label and len(set(who)) == MAX_IDENTITIES and who[0].startswith("test person")
    assert Image.open(toy.examples.rows[2][1]).size == (toy.pipe.lr_size,) * 2  # an LR image at the model's LR size


def test_generate_four_faces_as_the_pipeline_does(toy):
    mode, contour, ids = uploads(toy.examples.rows[0])
    out = toy.generate(mode, contour, ids, aligned=True)
    s, n = toy.pipe.output_size, toy.pipe.n_iters
    assert [f.shape for f in out.faces] == [(s, s, 3)] * 4 and all(f.dtype == np.uint8 for f in out.faces)
    assert len(out.steps) == n and all(strip.shape == (s, 5 * s, 3) for strip in out.steps)
    np.testing.assert_array_equal(out.steps[-1][:, s : 2 * s], out.faces[0])  # the last step is the result
    person = toy.read_contour(mode, contour, aligned=True)[1].label
    assert len(out.seen) == 5 and out.seen[0][1] == f"contour: {person}"
    assert out.seen[1][1] == f"identity 1: used as an aligned crop ({person})"
    # the same generation as the API: an LR contour made from the aligned photo, the aligned identity photo
    from data.conditions import lr_downsample

    lr = lr_downsample(toy.pipe.align(contour.path, aligned=True).image, toy.pipe.lr_size)
    api = toy.pipe(lr, [p.path for p in ids], aligned=True)
    for face, expected in zip(out.faces, api.image):
        np.testing.assert_array_equal(face, to_uint8(expected))
    # different identity photos give different faces
    assert all(np.abs(out.faces[a].astype(int) - out.faces[b]).mean() > 1 for a in range(4) for b in range(a))
    assert all(-1 <= v <= 1 for v in out.identity_sim + out.contour_sim)
    assert "test person" in out.table and out.status.startswith("Generated 4 face(s)")


def test_one_identity_steps_and_seed(toy):
    mode, contour, ids = uploads(toy.examples.rows[1])
    fixed = toy.generate(mode, contour, [None, ids[2], None, None], aligned=True, n_iters=2)
    assert len(fixed.faces) == 1 and len(fixed.steps) == 2 and fixed.captions[0].startswith("face 1: IDSIM")
    a = toy.generate(mode, contour, [ids[2]], aligned=True, n_iters=2, seed="7")
    b = toy.generate(mode, contour, [ids[2]], aligned=True, n_iters=2, seed=7)
    np.testing.assert_array_equal(a.faces[0], b.faces[0])
    assert not np.array_equal(a.faces[0], fixed.faces[0]) and "noise seed 7" in a.status
    with pytest.raises(DemoError) as err:
        toy.generate(mode, contour, [ids[0]], aligned=True, n_iters=max_steps(toy.pipe) + 1, seed="x1")
    assert len(lines(err)) == 2 and "refinement steps must be" in lines(err)[0] and "whole number" in lines(err)[1]


def test_bad_inputs_give_one_line_each(toy, tmp_path):
    mode, contour, ids = uploads(toy.examples.rows[0])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    blank = save_image(torch.zeros(3, 200, 200), tmp_path / "wall.png")  # a gray wall: no face
    labels = torch.zeros(64, 64, dtype=torch.long)
    labels[16:48, 16:48] = 1
    label_map = save_label_map(labels, tmp_path / "labels.png")
    with pytest.raises(DemoError) as err:
        toy.generate(
            LR_IMAGE,
            Upload.of(label_map),
            [None, Upload.of(tmp_path / "broken.png", "me.png"), Upload.of(blank)],
            aligned=False,
        )
    found = lines(err)
    assert len(found) == 3, found
    assert found[0].startswith("contour (labels.png): this is a label map") and "takes lr contours" in found[0]
    assert found[1].startswith("identity photo 2 (me.png): cannot read this file: not a recognised image")
    assert found[2].startswith("identity photo 3 (wall.png): no face found (cascade detector)")
    assert f"tick '{ALIGNED_LABEL}'" in found[2] and str(tmp_path) not in " ".join(found)
    # toy photos are not found by the cascade either: the page says what to tick
    with pytest.raises(DemoError, match="no face found"):
        toy.generate(mode, contour, ids[:1], aligned=False)
    with pytest.raises(DemoError) as err:
        toy.generate(mode, None, [None] * 4, aligned=True)
    assert lines(err) == [
        "give a contour: a face photo (made into a 8x8 LR contour)",
        "give at least one identity photo (up to 4)",
    ]
    with pytest.raises(DemoError, match="not one of this checkpoint's"):
        toy.generate(LABEL_MAP, contour, ids, aligned=True)


def test_a_real_photo_is_aligned_by_the_cascade(toy):
    insightface = pytest.importorskip("insightface")
    tom = os.path.join(os.path.dirname(insightface.__file__), "data", "images", "Tom_Hanks_54745.png")
    out = toy.generate(PHOTO_TO_LR, Upload.of(tom), [Upload.of(tom)], aligned=False)
    assert out.seen[0][1] == "contour: the contour photo (Tom_Hanks_54745.png)"
    assert out.seen[1][1] == "identity 1: cascade" and out.contour_sim[0] is not None
    assert out.identity_sim[0] == pytest.approx(out.contour_sim[0], abs=1e-5)  # the same photo


def test_without_an_idsim_network(tmp_path):
    run, _ = make_tiny_run(tmp_path)
    pipe = load_pipeline(run)
    demo = Demo(pipe, None, "identity similarity unavailable (no such file)")
    save_image(torch.rand(3, 64, 64) * 2 - 1, tmp_path / "id.png")
    save_image(torch.rand(3, 8, 8) * 2 - 1, tmp_path / "lr.png")
    out = demo.generate(LR_IMAGE, Upload.of(tmp_path / "lr.png"), [Upload.of(tmp_path / "id.png")], aligned=True)
    assert out.identity_sim == [None] and out.captions == ["face 1"] and "unavailable" in out.table
    assert "unavailable" in demo.describe() and demo.examples.rows == []
