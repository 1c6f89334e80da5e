"""The identity-following figure on the shipped toy encoder, at a tiny count."""

import math

import pytest
import torch
from PIL import Image

from experiments.figure import main
from experiments.identity_figure import LINE_HEIGHT, TEXT_LINES, draw_identity_figure, score_lines


def test_the_figure_feeds_one_contour_with_other_peoples_photos_and_scores_each_output(tmp_path):
    out = tmp_path / "figures" / "identity.png"
    fig = draw_identity_figure("toy", out, contour_person=3, n_identities=2, tile=32)
    with Image.open(out) as png:
        assert png.format == "PNG" and png.mode == "RGB"
        # two rows of 1 + 2 tiles (6 px padding) under a two-line header, captions under each tile
        assert png.size == (6 + 3 * (32 + 6), 2 * LINE_HEIGHT + 2 * (32 + TEXT_LINES * LINE_HEIGHT + 6))
    people = [s.identity_person for s in fig.scores]
    assert len(set(people)) == 2 and fig.contour_person not in people
    assert fig.identities.shape == fig.outputs.shape == (2, 3, 32, 32) and fig.contour.shape == (1, 3, 32, 32)
    # the same contour with two people's photos: the identity photo changes the output
    assert not torch.allclose(fig.outputs[0], fig.outputs[1], atol=1e-3)
    for s in fig.scores:
        assert all(math.isfinite(v) and -1 <= v <= 1 for v in (s.to_identity_person, s.to_contour_person))
    assert f"identity person {people[0]}: to them {fig.scores[0].to_identity_person:+.3f}" in score_lines(fig)[0]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: --contour-person must be in \[0, 300\)"):
        main(["identity", "--out", str(tmp_path / "f.png"), "--identities", "0"])
    assert not (tmp_path / "f.png").exists()
    with pytest.raises(SystemExit, match=r"^error: checkpoint .*nowhere does not exist"):
        main(["identity", "--out", str(tmp_path / "f.png"), "--checkpoint", str(tmp_path / "nowhere")])
    assert not (tmp_path / "f.png").exists()
