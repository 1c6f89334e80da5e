"""BatchNorm with per-refinement-step running statistics: the reference BatchNorm2d at each step, only the step's row
moves in training, eval mode per sample, and the encoders built with model.step_norm_statistics."""

import pytest
import torch
from torch import nn

from models.build import build_model
from models.step_norm import StepBatchNorm2d, set_norm_step, use_step_statistics
from tests.models.test_build import gen, toy_cfg, toy_irse_file  # noqa: F401 (fixtures)


def trained_pair(n_steps=3):
    """A BatchNorm2d and its StepBatchNorm2d copy, the reference's running statistics moved off their init."""
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(4)
    nn.init.normal_(ref.weight)
    nn.init.normal_(ref.bias)
    ref(torch.randn(6, 4, 3, 3) * 2 + 1)
    step = StepBatchNorm2d(4, n_steps)
    step.load_state_dict(
        {
            **ref.state_dict(),
            "running_mean": ref.running_mean.expand(n_steps, -1),
            "running_var": ref.running_var.expand(n_steps, -1),
        }
    )
    return ref, step


def test_each_step_is_the_reference_batchnorm_on_its_own_row():
    ref, step = trained_pair()
    x = torch.randn(5, 4, 3, 3) * 3 - 1
    for t in range(3):
        xt = x * (t + 1)  # each step its own input
        set_norm_step([step], t)
        other_rows = [r for r in range(3) if r != t]
        before = step.running_mean[other_rows].clone(), step.running_var[other_rows].clone()
        copy = nn.BatchNorm2d(4)
        copy.load_state_dict(
            {
                **ref.state_dict(),
                "running_mean": step.running_mean[t].clone(),
                "running_var": step.running_var[t].clone(),
            }
        )
        assert torch.equal(step.train()(xt), copy.train()(xt))  # batch statistics, and the row's update
        assert torch.equal(step.running_mean[t], copy.running_mean) and torch.equal(
            step.running_var[t], copy.running_var
        )
        assert torch.equal(step.running_mean[other_rows], before[0]) and torch.equal(
            step.running_var[other_rows], before[1]
        )
        assert torch.equal(step.eval()(xt), copy.eval()(xt))  # the row's statistics
    assert not torch.equal(step.running_mean[0], step.running_mean[2])  # each row took its own update
    step.eval()
    set_norm_step([step], 2)
    last = step(x)
    set_norm_step([step], 7)  # past the last step: the last row's statistics
    assert torch.equal(step(x), last)
    set_norm_step([step], 0)
    assert not torch.equal(step(x), last)
    assert torch.equal(step(x[:1]), step(x)[:1])  # eval mode: per sample


def test_conversion_keeps_the_layer_and_copies_its_statistics():
    ref, _ = trained_pair()
    block = nn.Sequential(nn.Conv2d(3, 4, 3), ref, nn.Sequential(nn.BatchNorm2d(4, affine=True)))
    x = torch.randn(2, 3, 5, 5)
    expected = block.eval()(x)
    converted = use_step_statistics(block, 4)
    assert len(converted) == 2 and all(isinstance(m, StepBatchNorm2d) for m in (block[1], block[2][0]))
    assert block[1].running_mean.shape == (4, 4) and torch.equal(block[1].running_mean[3], ref.running_mean)
    for t in range(4):
        set_norm_step(converted, t)
        assert torch.equal(block.eval()(x), expected)
    with pytest.raises(ValueError, match="affine"):
        use_step_statistics(nn.Sequential(nn.BatchNorm2d(4, affine=False)), 2)


@pytest.mark.parametrize("preset", ["baseline", "pretrained_id"])
def test_the_encoder_normalises_each_refinement_step_by_its_own_statistics(preset, gen, toy_irse_file):  # noqa: F811
    model = build_model(
        toy_cfg(preset, identity_weights=str(toy_irse_file), step_norm_statistics=True, n_iters=3),
        gen,
        3,
        input_size=64,
    )
    enc = model.encoder
    identity_norms = list(enc.identity.modules()) if preset == "pretrained_id" else []
    assert not any(isinstance(m, StepBatchNorm2d) for m in identity_norms)  # E_id's input is the same every step
    assert isinstance(enc.input_layer[1], StepBatchNorm2d) and len(model.step_norms) > 1
    torch.manual_seed(1)
    contour, identity = torch.rand(4, 3, 64, 64) * 2 - 1, torch.rand(4, 3, 64, 64) * 2 - 1
    model.train()
    with torch.no_grad():
        model(contour, identity)
    rows = enc.input_layer[1].running_mean
    assert not torch.equal(rows[0], rows[1]) and not torch.equal(rows[1], rows[2])
    model.eval()
    with torch.no_grad():
        alone = model(contour[:1], identity[:1])[-1].image
        batched = model(contour, identity)[-1].image[:1]
    torch.testing.assert_close(alone, batched)
    # the run's export loads strictly into the same config's model
    again = build_model(
        toy_cfg(preset, identity_weights=str(toy_irse_file), step_norm_statistics=True, n_iters=3),
        gen,
        3,
        input_size=64,
    )
    again.encoder.load_state_dict(enc.state_dict())
    plain = build_model(
        toy_cfg(preset, identity_weights=str(toy_irse_file), step_norm_statistics=False, n_iters=3),
        gen,
        3,
        input_size=64,
    )
    with pytest.raises(RuntimeError, match="size mismatch"):
        plain.encoder.load_state_dict(enc.state_dict())


def test_training_is_unchanged_only_the_running_statistics_differ(gen, toy_irse_file):  # noqa: F811
    """Training normalises by batch statistics either way, so the flag changes what eval mode uses, nothing else."""
    models = []
    for flag in (False, True):
        torch.manual_seed(2)
        models.append(
            build_model(
                toy_cfg("input_latent", step_norm_statistics=flag, n_iters=3),
                gen,
                3,
                input_size=64,
            )
        )
    torch.manual_seed(3)
    contour, identity = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    for model in models:
        model.train()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        for _ in range(2):
            for step in model.iterate(contour, identity, randomize_noise=False):
                step.image_loss_res.square().mean().backward()
            opt.step()
            opt.zero_grad()
    plain, stepped = (dict(m.encoder.named_parameters()) for m in models)
    assert plain.keys() == stepped.keys() and all(torch.equal(plain[k], stepped[k]) for k in plain)
