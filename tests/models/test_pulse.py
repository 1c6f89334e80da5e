import copy
import dataclasses
import shutil

import pytest
import torch
from safetensors.torch import save_file

from experiments.config import load_config
from experiments.methods import build_pulse
from experiments.world import build_dataset
from losses import IdentityLoss
from models.irse import Backbone, load_arcface
from models.pulse import (
    SCHEDULES,
    Pulse,
    PulseConfig,
    SphericalOptimizer,
    fit_gaussian,
    gaussian_fit,
    geocross,
    lr_factor,
    mapping_hash,
)
from models.stylegan2 import Generator
from models.weights import PRETRAINED_DIR
from ops.resize import bicubic_downsample


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # many tiny ops: on a shared, oversubscribed CPU one thread is several times faster than two
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_spherical_projection_keeps_every_row_and_map_at_its_initial_radius():
    torch.manual_seed(0)
    z = torch.randn(3, 4, 16, requires_grad=True)
    noise = torch.randn(3, 1, 8, 8, requires_grad=True)
    r_z = z.detach().norm(dim=2)
    r_n = noise.detach().flatten(1).norm(dim=1)
    opt = SphericalOptimizer([z, noise], lr=0.4)
    target = torch.randn(3, 4, 16)
    for _ in range(5):
        opt.zero_grad()
        ((z - target).pow(2).sum() + noise.sin().sum()).backward()
        before = z.detach().clone()
        opt.step()
        assert not torch.allclose(z.detach(), before)  # the step moved z ...
        torch.testing.assert_close(z.detach().norm(dim=2), r_z)  # ... and every row is back on its sphere
        torch.testing.assert_close(noise.detach().flatten(1).norm(dim=1), r_n)


def test_geocross_zero_for_identical_rows_positive_otherwise():
    row = torch.randn(1, 1, 8)
    same = row.expand(2, 5, 8).clone().requires_grad_(True)
    g = geocross(same)
    assert torch.equal(g, torch.zeros(2))
    g.sum().backward()
    assert torch.isfinite(same.grad).all()
    different = same.detach().clone()
    different[1, 3] = -different[1, 3]  # antipodal row: angle pi with the 4 others
    g = geocross(different)
    assert g[0] == 0 and g[1] > 0
    # 8 ordered pairs at angle pi among 25 pairs, times D / 8 = 1
    assert g[1].item() == pytest.approx(8 * torch.pi**2 / 25, rel=1e-5)


def test_linear1cycledrop_schedule_shape():
    steps = 100
    f = [lr_factor("linear1cycledrop", i, steps) for i in range(steps + 1)]
    assert f[0] == pytest.approx(0.1) and f[45] == pytest.approx(1.0) and f[90] == pytest.approx(0.1)
    assert f[100] == pytest.approx(0.001) and max(f) == f[45]
    assert set(SCHEDULES) == {"fixed", "linear1cycle", "linear1cycledrop"}
    with pytest.raises(ValueError, match="schedule"):
        PulseConfig(schedule="cosine")


def test_defaults_are_pulses():
    c = PulseConfig()
    assert (c.steps, c.lr, c.schedule, c.eps) == (100, 0.4, "linear1cycledrop", 2e-3)
    assert (c.w_l2, c.w_geo, c.n_trainable_noise) == (100.0, 0.05, 5)


# --- on a small random-weight generator -------------------------------------------------------------


@pytest.fixture(scope="module")
def small_world():
    """A 16x16 random StyleGAN2, its Gaussian fit, faces from it (LR targets at 4x4, identities) and a
    random IR-SE ArcFace whose batch-norm statistics are calibrated on generated faces, so that its
    embeddings tell faces apart (an uncalibrated random net maps every face to nearly one direction)."""
    torch.manual_seed(0)
    g = Generator(16, style_dim=32, n_mlp=2, channels={4: 32, 8: 32, 16: 16}).eval()
    mean, std = fit_gaussian(g, 20_000)
    with torch.no_grad():
        faces, _ = g([g.get_latent(torch.randn(132, 32))], input_is_latent=True, randomize_noise=False)
    faces = faces.clamp(-1, 1)  # as real contours and identity photos
    net = Backbone(input_size=16, stage_channels=(8, 16, 24, 32), stage_units=(1, 1, 1, 1), embedding_dim=16)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average over the calibration batch
    with torch.no_grad():
        net.train()(faces[4:])
    identity_loss = IdentityLoss(net.eval(), crop=(0.0, 1.0, 0.0, 1.0))
    return dict(
        g=g,
        mean=mean,
        std=std,
        lr=bicubic_downsample(faces[:2], size=4),
        identity=faces[2:4],
        identity_loss=identity_loss,
    )


def make_pulse(world, lr_size=None, **config):
    w = world
    return Pulse(w["g"], w["mean"], w["std"], w["identity_loss"], PulseConfig(**config), lr_size)


def run_pulse(world, **config):
    return make_pulse(world, **config)(world["lr"], world["identity"])


def test_pulse_matches_lr_and_identity_weight_raises_similarity(small_world):
    start = run_pulse(small_world, steps=1, w_id=0.0)  # the kept image is the initial one
    plain = run_pulse(small_world, steps=50, w_id=0.0)
    with_id = run_pulse(small_world, steps=50, w_id=1.0)
    assert plain.l2.mean() < start.l2.mean() / 10
    lr01 = (small_world["lr"] + 1) / 2
    # the returned image (clamped to [-1, 1] after the l2 was measured) is about as LR-consistent
    measured = (bicubic_downsample((plain.image + 1) / 2, size=4) - lr01).pow(2).mean((1, 2, 3))
    assert torch.all(measured < 2 * plain.l2 + 1e-3)
    torch.testing.assert_close(plain.eps_reached, plain.l2 <= 2e-3)
    assert plain.id_loss is None and with_id.id_loss is not None
    embed = small_world["identity_loss"].embed
    with torch.no_grad():
        target = embed(small_world["identity"])
        sim_plain = (embed(plain.image) * target).sum(1)
        sim_id = (embed(with_id.image) * target).sum(1)
    assert sim_id.mean() > sim_plain.mean() + 0.2
    assert with_id.l2.mean() < start.l2.mean() / 5  # still LR-consistent with the identity term on


def test_noise_layout_and_tiled_latent(small_world):
    g = small_world["g"]
    pulse = make_pulse(small_world, n_trainable_noise=2)
    z, noises, trainable = pulse._init_variables(2, torch.device("cpu"))
    assert z.shape == (2, g.n_latent, g.style_dim) and len(noises) == g.num_layers
    assert trainable[0] is z and len(trainable) == 3
    assert [n.requires_grad for n in noises] == [True, True] + [False] * (g.num_layers - 2)
    assert noises[-1].abs().sum() == 0 and noises[-2].abs().sum() > 0
    out = make_pulse(small_world, w_id=0.0, steps=2, tile_latent=True)(small_world["lr"][:2])
    assert out.image.shape == (2, 3, 16, 16) and out.image.abs().max() <= 1
    assert torch.equal(out.w, out.w[:, :1].expand_as(out.w)) and torch.equal(out.geocross, torch.zeros(2))


def test_only_lr_contours_and_identity_needed(small_world):
    pulse = make_pulse(small_world)
    with pytest.raises(ValueError, match="LR contours only"):
        pulse(torch.zeros(1, 19, 4, 4), small_world["identity"][:1])
    with pytest.raises(ValueError, match="identity"):
        pulse(small_world["lr"][:1])
    with pytest.raises(ValueError, match="identity_loss"):
        Pulse(small_world["g"], small_world["mean"], small_world["std"], None, PulseConfig(w_id=1.0))
    cfg = load_config(["method=pulse", "data.condition=mask"])
    with pytest.raises(ValueError, match="LR contours only"):
        build_pulse(cfg, torch.device("cpu"))


def test_lr_contour_at_input_size_is_brought_to_lr_size(small_world):
    up = torch.nn.functional.interpolate(small_world["lr"][:1], size=16, mode="nearest")
    pulse = make_pulse(small_world, lr_size=4)
    torch.testing.assert_close(pulse._lr_target(up), (bicubic_downsample(up, size=4) + 1) / 2)


def test_best_image_prefers_lr_consistent_then_lower_loss(small_world):
    pulse = make_pulse(small_world, eps=0.1)
    best, img, w, geo = {}, torch.zeros(3, 3, 2, 2), torch.zeros(3, 1, 2), torch.zeros(3)
    terms = lambda *l2: {"l2": torch.tensor(l2), "geocross": geo}  # noqa: E731
    pulse._keep_best(best, 0, img, w, torch.tensor([1.0, 1.0, 5.0]), terms(0.05, 0.5, 0.5))
    # 0: lower loss but not LR-consistent -> kept; 1: consistent now -> taken; 2: same status, lower -> taken
    pulse._keep_best(best, 1, img + 1, w, torch.tensor([0.5, 9.0, 4.0]), terms(0.5, 0.05, 0.6))
    assert best["step"].tolist() == [0, 1, 1]
    assert best["image"][:, 0, 0, 0].tolist() == [0.0, 1.0, 1.0]


def test_gaussian_fit_is_cached_by_mapping_hash(small_world, tmp_path):
    g = small_world["g"]
    mean, std = gaussian_fit(g, 4096, cache_dir=tmp_path)
    (path,) = tmp_path.glob("gaussian_fit-*.safetensors")
    assert mapping_hash(g) in path.name
    save_file({"mean": mean + 1, "std": std}, str(path))  # a changed cache proves the second call reads it
    torch.testing.assert_close(gaussian_fit(g, 4096, cache_dir=tmp_path)[0], mean + 1)
    torch.testing.assert_close(gaussian_fit(g, 4096, cache_dir=tmp_path, recompute=True)[0], mean)
    # the fit describes the mapped space: another seed's samples have about the same moments
    v = torch.nn.functional.leaky_relu(g.get_latent(torch.randn(4096, g.style_dim)), 5.0).detach()
    assert (v.mean(0) - mean).abs().max() < 0.2 * std.mean() and (v.std(0) / std - 1).abs().max() < 0.1
    other = copy.deepcopy(g)
    with torch.no_grad():
        other.to_rgb1.bias += 1  # synthesis weights do not change the fit's key ...
        assert mapping_hash(other) == mapping_hash(g)
        other.style[1].bias += 1  # ... mapping weights do
    assert mapping_hash(other) != mapping_hash(g)


# --- on the toy world's trained networks -------------------------------------------------------------

TOY_FILES = ("toy_stylegan2.safetensors", "toy_arcface.safetensors", "toy_eval_arcface.safetensors")


@pytest.mark.slow
@pytest.mark.skipif(
    not all((PRETRAINED_DIR / f).is_file() for f in TOY_FILES),
    reason="the toy world's networks are not in models/pretrained/",
)
def test_toy_world_pulse_matches_lr_and_identity_weight_raises_idsim(tmp_path):
    shutil.copy(PRETRAINED_DIR / TOY_FILES[0], tmp_path)  # the Gaussian-fit cache lands beside this copy
    cfg = load_config(
        [
            "method=pulse",
            f"generator.weights={tmp_path / TOY_FILES[0]}",
            "pulse.steps=50",
            "pulse.gaussian_fit_samples=100000",
        ]
    )
    test_set = build_dataset(cfg, "test")
    items = [test_set[i * cfg.data.n_identity_per_contour] for i in range(4)]  # 4 different contours
    contour, identity = (torch.stack([it[k] for it in items]) for k in ("contour", "identity"))
    pulse = build_pulse(cfg, torch.device("cpu"))
    assert len(list(tmp_path.glob("gaussian_fit-*.safetensors"))) == 1
    with_id = pulse(contour, identity)
    pulse.config = dataclasses.replace(pulse.config, w_id=0.0)
    plain = pulse(contour, identity)
    pulse.config = dataclasses.replace(pulse.config, steps=1)
    start = pulse(contour, identity)
    assert plain.l2.mean() < start.l2.mean() / 10 and with_id.l2.mean() < start.l2.mean() / 5
    # IDSIM with the toy evaluation ArcFace (not the one in the loss)
    evaluator = IdentityLoss(load_arcface("toy_eval_arcface"), crop=cfg.eval.id_crop)
    with torch.no_grad():
        target = evaluator.embed(identity)
        sim_plain, sim_id = ((evaluator.embed(r.image) * target).sum(1).mean() for r in (plain, with_id))
    assert sim_id > sim_plain + 0.05


def test_pulse_config_from_section_ignores_other_keys_and_takes_overrides():
    config = PulseConfig.from_section({"steps": 7, "lr": 0.1, "not_a_field": 1}, steps=3)
    assert (config.steps, config.lr, config.schedule) == (3, 0.1, PulseConfig().schedule)
    with pytest.raises(ValueError, match="schedule"):
        PulseConfig.from_section({"schedule": "nope"})
