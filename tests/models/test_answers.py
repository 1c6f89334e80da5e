import pytest
import torch

from models.answers import ANSWERS, answer
from models.build import EVAL_ONLY, KINDS
from ops.resize import resize_to


def inputs(b=3, size=16):
    g = torch.Generator().manual_seed(0)
    contour = torch.rand(b, 3, 8, 8, generator=g) * 2 - 1
    identity = torch.rand(b, 3, 32, 32, generator=g) * 2 - 1
    target = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    average = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    return contour, identity, target, average


def test_each_answer_is_its_input_at_the_targets_size():
    contour, identity, target, average = inputs()
    out = {name: answer(name, contour, identity, target, average) for name in ANSWERS}
    assert all(o.shape == target.shape for o in out.values())
    assert torch.equal(out["copy_target"], target)
    assert torch.equal(out["copy_identity"], resize_to(identity, 16).clamp(-1, 1))
    assert torch.equal(out["copy_contour"], resize_to(contour, 16).clamp(-1, 1))
    assert torch.equal(out["average_face"][0], out["average_face"][2])
    assert torch.equal(out["average_face"][:1], resize_to(average, 16).clamp(-1, 1))
    assert all(o.abs().max() <= 1 for o in out.values())  # bicubic overshoot is clamped


def test_the_answers_are_model_kinds_with_nothing_to_train():
    assert set(ANSWERS) <= set(EVAL_ONLY) <= set(KINDS)


def test_unknown_answer_and_wrong_shapes_are_errors():
    contour, identity, target, average = inputs()
    with pytest.raises(ValueError, match="copy_target, copy_identity"):
        answer("copy_photo", contour, identity, target, average)
    with pytest.raises(ValueError, match="contour_rgb"):
        answer("copy_contour", contour[:, :1], identity, target, average)
    with pytest.raises(ValueError, match="identity"):
        answer("copy_identity", contour, identity[:2], target, average)
    with pytest.raises(ValueError, match="average"):
        answer("average_face", contour, identity, target, average.expand(2, -1, -1, -1))
