"""The toy StyleGAN2's distillation at tiny sizes: skip images and target styles, training that lowers
both regressions, checkpoint + resume equal to an uninterrupted run, --init, the mapping floor, the
adversarial and perceptual terms, and exports that load back through load_generator."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data.toyfaces.render import FACTOR_DIMS
from experiments.config_schema import ConfigError
from experiments.toy_pretraining.distillation import synthesis_loss
from experiments.toy_pretraining.generator import (
    GeneratorConfig,
    build_generator,
    export_generator,
    generator_batch,
    heldout_codes,
    mapping_rel_mse,
    mapping_rel_mse_floor,
    skip_images,
    target_styles,
    train_generator,
)

TINY_G = replace(
    GeneratorConfig(),
    size=16,
    style_dim=48,
    n_mlp=2,
    channels=((4, 16), (8, 16), (16, 8)),
    batch_size=4,
    steps=8,
    ckpt_every=4,
    sample_every=1000,
    mapping_steps=40,
    mapping_batch_size=64,
)


def test_skip_images_match_the_generator_and_target_styles_are_fixed():
    torch.manual_seed(0)
    g = build_generator(TINY_G)
    z = torch.randn(3, 48)
    w = target_styles(z, TINY_G)
    assert w.shape == (3, 48) and torch.equal(w, target_styles(z.clone(), TINY_G))
    z2 = z.clone()
    z2[:, FACTOR_DIMS:] += 1.0  # dims the renderer ignores do not move w*
    assert torch.equal(target_styles(z2, TINY_G), w)
    skips = skip_images(g, w)
    assert sorted(skips) == [4, 8, 16] and skips[8].shape == (3, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(skips[16], g([w], input_is_latent=True, randomize_noise=False)[0], atol=1e-6)


@pytest.mark.slow
def test_generator_distillation_trains_resumes_and_exports(tmp_path):
    torch.manual_seed(TINY_G.seed)
    initial = build_generator(TINY_G)
    z, real, _ = generator_batch(replace(TINY_G, batch_size=16), torch.Generator().manual_seed(123))
    w = target_styles(z, TINY_G)
    g, latent_avg, losses = train_generator(TINY_G, tmp_path / "a", progress=False)
    assert len(losses) == 8 and latent_avg.shape == (48,)
    with torch.no_grad():  # a held-out batch: both regressions went down
        assert synthesis_loss(skip_images(g, w), real) < synthesis_loss(skip_images(initial, w), real)
        assert F.mse_loss(g.style(z), w) < F.mse_loss(initial.style(z), w)
    train_generator(TINY_G, tmp_path / "b", progress=False, stop_at=4)
    resumed, _, more = train_generator(TINY_G, tmp_path / "b", progress=False)
    assert len(more) == 4
    for (k, v), u in zip(g.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(v, u, atol=1e-5), k

    from models.stylegan2 import load_generator

    path = export_generator(g, latent_avg, "tiny_g", tmp_path / "out")["safetensors"]
    loaded, avg = load_generator(path, 16, style_dim=48, n_mlp=2, channels=dict(TINY_G.channels))
    assert torch.allclose(avg, latent_avg, atol=1e-2)
    z = torch.randn(2, 48)
    with torch.no_grad():
        out, ref = loaded([z], randomize_noise=False)[0], g([z], randomize_noise=False)[0]
    assert torch.allclose(out, ref, atol=5e-2)


def test_generator_starts_from_an_init_file_and_a_checkpoint_wins(tmp_path):
    from models.stylegan2 import load_generator

    g, latent_avg, _ = train_generator(TINY_G, tmp_path / "a", progress=False)
    path = export_generator(g, latent_avg, "tiny_g", tmp_path / "out")["safetensors"]
    # synthesis lr 0 and no mapping steps: the run must keep exactly what it started from
    still = replace(TINY_G, lr=0.0, steps=2, mapping_steps=0)
    started, _, losses = train_generator(still, tmp_path / "b", progress=False, init=path)
    shipped, _ = load_generator(path, 16, style_dim=48, n_mlp=2, channels=dict(TINY_G.channels))
    assert len(losses) == 2
    for (k, v), u in zip(shipped.state_dict().items(), started.state_dict().values()):
        assert torch.equal(v, u), k
    recorded = torch.load(tmp_path / "b" / TINY_G.name / "ckpt.pt", weights_only=True)["mapping_rel_mse"]
    shipped_error = mapping_rel_mse(shipped, TINY_G)
    torch.manual_seed(TINY_G.seed)
    assert recorded == pytest.approx(shipped_error) and recorded < mapping_rel_mse(build_generator(TINY_G), TINY_G)
    # with mapping steps, the file's mapping fit continues (and the synthesis is left alone at lr 0)
    refit, _, _ = train_generator(replace(still, mapping_steps=200), tmp_path / "f", progress=False, init=path)
    assert mapping_rel_mse(refit, TINY_G) < 0.9 * shipped_error
    synthesis = [k for k in shipped.state_dict() if not k.startswith("style.")]
    assert all(torch.equal(shipped.state_dict()[k], refit.state_dict()[k]) for k in synthesis)

    # the same command again resumes the checkpoint; --init is not read (here it no longer exists)
    _, _, more = train_generator(
        replace(still, steps=3), tmp_path / "b", progress=False, init=tmp_path / "gone.safetensors"
    )
    assert len(more) == 1
    with pytest.raises(ConfigError, match="gone.safetensors: no such file"):
        train_generator(still, tmp_path / "c", progress=False, init=tmp_path / "gone.safetensors")
    other = export_generator(
        build_generator(replace(TINY_G, channels=((4, 8), (8, 8), (16, 8)))), latent_avg, "other", tmp_path / "out"
    )["safetensors"]
    with pytest.raises(ConfigError, match="other.safetensors: not a generator of this configuration"):
        train_generator(still, tmp_path / "d", progress=False, init=other)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ConfigError, match="--init .*cut.safetensors: not a readable safetensors file"):
        train_generator(still, tmp_path / "g", progress=False, init=cut)


def test_mapping_floor_is_the_best_any_direction_only_mapping_can_do():
    """PixelNorm gives the mapping z / |z| only: the floor (the mean of w* over the unseen norm) is above 0 and
    below the error of another direction-only predictor, w* of the direction scaled to the mean norm."""
    cfg = GeneratorConfig()
    floor = mapping_rel_mse_floor(cfg)
    z = heldout_codes(cfg)
    target = target_styles(z, cfg)
    rescaled = target_styles(z / z.norm(dim=1, keepdim=True) * z.norm(dim=1).mean(), cfg)
    assert 0.001 < floor < F.mse_loss(rescaled, target).item() / target.var().item()


@pytest.mark.slow
def test_adversarial_distillation_checkpoints_the_discriminator_and_resumes_exactly(tmp_path):
    cfg = replace(TINY_G, adversarial_weight=0.05, r1_every=2, perceptual_weight=0.1)
    straight, _, losses = train_generator(cfg, tmp_path / "a", progress=False)
    state = torch.load(tmp_path / "a" / cfg.name / "ckpt.pt", weights_only=True)
    assert {"d", "d_opt"} <= set(state) and state["step"] == cfg.steps
    train_generator(cfg, tmp_path / "b", progress=False, stop_at=4)
    resumed, _, more = train_generator(cfg, tmp_path / "b", progress=False)
    assert len(more) == 4 and np.allclose(losses[4:], more, atol=1e-4)
    for (k, v), u in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(v, u, atol=1e-5), k
    # the same schedule without the two terms draws something else: they are in the update
    plain, _, _ = train_generator(TINY_G, tmp_path / "c", progress=False)
    assert not torch.allclose(plain.to_rgbs[-1].conv.weight, straight.to_rgbs[-1].conv.weight)


@pytest.mark.cuda
def test_generator_trains_on_cuda_like_on_cpu(tmp_path):
    """Same codes on either device (drawn on the CPU), so a few steps land on nearly the same weights."""
    cfg = replace(TINY_G, steps=4, mapping_steps=10, perceptual_weight=0.0)
    on_cpu, _, cpu_losses = train_generator(cfg, tmp_path / "cpu", progress=False)
    on_gpu, _, gpu_losses = train_generator(cfg, tmp_path / "gpu", progress=False, device="cuda")
    assert next(on_gpu.parameters()).device.type == "cpu"  # handed back on the CPU, ready to export
    assert np.allclose(cpu_losses, gpu_losses, rtol=1e-2)


def test_generator_perceptual_term_grows_with_blur_on_the_shipped_arcface():
    """The generator's perceptual term: the project's LPIPS loss on the toy ID ArcFace's stages."""
    from losses.perceptual import PerceptualLoss

    loss = PerceptualLoss.from_backbone("irse", network=GeneratorConfig().perceptual_net)
    _, real, _ = generator_batch(replace(GeneratorConfig(), batch_size=8), torch.Generator().manual_seed(5))
    assert loss(real, real).item() == pytest.approx(0.0, abs=1e-6)
    blurred = [F.avg_pool2d(real, k, 1, k // 2) for k in (3, 5, 7)]
    losses = [loss(b, real).item() for b in blurred]
    assert losses[0] > 0 and losses == sorted(losses)
