"""Toy-network pretraining at tiny sizes: the margin head, verification accuracy, training that lowers
the loss, checkpoint + resume equal to an uninterrupted run, and exports that load back strictly
(safetensors through the ID-loss loader and load_generator, ONNX through insightface)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import experiments.pretrain_toy as P

TINY_ARC = replace(P.ARCFACES["toy_eval_arcface"], stage_channels=(8, 12, 16, 24), embedding_dim=16,
                   n_identities=4, batch_size=8, steps=12, lr=3e-3, margin=0.0, ckpt_every=4, eval_every=1000,
                   eval_identities=10)
TINY_G = replace(P.GeneratorConfig(), size=16, style_dim=48, n_mlp=2, channels=((4, 16), (8, 16), (16, 8)),
                 batch_size=4, steps=8, ckpt_every=4, sample_every=1000, mapping_steps=40, mapping_batch_size=64)


@pytest.fixture(autouse=True)
def no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


def test_margin_lowers_only_the_true_class_logit():
    head = P.ArcMarginHead(8, 5, scale=10.0)
    emb = F.normalize(torch.randn(4, 8), dim=1)
    labels = torch.tensor([0, 1, 2, 3])
    plain, margin = head(emb, labels, 0.0), head(emb, labels, 0.5)
    true = F.one_hot(labels, 5).bool()
    assert (margin[true] < plain[true]).all()
    assert torch.allclose(margin[~true], plain[~true])
    assert torch.allclose(plain, 10 * emb @ F.normalize(head.weight, dim=1).t(), atol=1e-5)


def test_verification_accuracy():
    same, diff = torch.linspace(0.6, 0.9, 50), torch.linspace(-0.2, 0.3, 50)
    assert P.verification_accuracy(same, diff) == 1.0
    noise = torch.rand(200, generator=torch.Generator().manual_seed(0))
    assert 0.3 < P.verification_accuracy(noise[:100], noise[100:]) < 0.7


@pytest.mark.slow
def test_arcface_trains_resumes_and_exports(tmp_path):
    net, out = P.train_arcface(TINY_ARC, tmp_path / "a", progress=False)
    losses = out["losses"]
    assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3])
    assert 0.0 <= out["report"]["verification_acc"] <= 1.0 and "lr_sim_same" in out["report"]
    # interrupted at step 6 (checkpoint), then resumed: the same weights as one run
    _, first = P.train_arcface(TINY_ARC, tmp_path / "b", progress=False, stop_at=6)
    assert len(first["losses"]) == 6 and first["report"] == {}
    resumed, second = P.train_arcface(TINY_ARC, tmp_path / "b", progress=False)
    assert len(second["losses"]) == 6
    for (k, v), w in zip(net.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(v.float(), w.float(), atol=1e-5), k

    paths = P.export_arcface(net, "tiny_arc", tmp_path / "out")
    from models.irse import load_arcface

    loaded = load_arcface(paths["safetensors"])
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    assert torch.allclose(loaded(x), net(x), atol=2e-2)  # fp16 weights
    import insightface

    model = insightface.model_zoo.get_model(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    assert type(model).__name__ == "ArcFaceONNX" and model.input_size == (112, 112)
    x112 = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False)
    onnx_emb = torch.from_numpy(model.forward(((x112 + 1) * 127.5).numpy().astype(np.float32)))
    assert torch.allclose(onnx_emb, P.ArcFaceONNXInput(loaded)(x112), atol=1e-4)


def test_skip_images_match_the_generator_and_target_styles_are_fixed():
    torch.manual_seed(0)
    g = P.build_generator(TINY_G)
    z = torch.randn(3, 48)
    w = P.target_styles(z, TINY_G)
    assert w.shape == (3, 48) and torch.equal(w, P.target_styles(z.clone(), TINY_G))
    z2 = z.clone()
    z2[:, P.FACTOR_DIMS:] += 1.0  # dims the renderer ignores do not move w*
    assert torch.equal(P.target_styles(z2, TINY_G), w)
    skips = P.skip_images(g, w)
    assert sorted(skips) == [4, 8, 16] and skips[8].shape == (3, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(skips[16], g([w], input_is_latent=True, randomize_noise=False)[0], atol=1e-6)


@pytest.mark.slow
def test_generator_distillation_trains_resumes_and_exports(tmp_path):
    torch.manual_seed(TINY_G.seed)
    initial = P.build_generator(TINY_G)
    z, real, _ = P.generator_batch(replace(TINY_G, batch_size=16), torch.Generator().manual_seed(123))
    w = P.target_styles(z, TINY_G)
    g, latent_avg, losses = P.train_generator(TINY_G, tmp_path / "a", progress=False)
    assert len(losses) == 8 and latent_avg.shape == (48,)
    with torch.no_grad():  # a held-out batch: both regressions went down
        assert P.synthesis_loss(P.skip_images(g, w), real) < P.synthesis_loss(P.skip_images(initial, w), real)
        assert F.mse_loss(g.style(z), w) < F.mse_loss(initial.style(z), w)
    P.train_generator(TINY_G, tmp_path / "b", progress=False, stop_at=4)
    resumed, _, more = P.train_generator(TINY_G, tmp_path / "b", progress=False)
    assert len(more) == 4
    for (k, v), u in zip(g.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(v, u, atol=1e-5), k

    from models.stylegan2 import load_generator

    path = P.export_generator(g, latent_avg, "tiny_g", tmp_path / "out")["safetensors"]
    loaded, avg = load_generator(path, 16, style_dim=48, n_mlp=2, channels=dict(TINY_G.channels))
    assert torch.allclose(avg, latent_avg, atol=1e-2)
    z = torch.randn(2, 48)
    with torch.no_grad():
        out, ref = loaded([z], randomize_noise=False)[0], g([z], randomize_noise=False)[0]
    assert torch.allclose(out, ref, atol=5e-2)


def test_generator_starts_from_an_init_file_and_a_checkpoint_wins(tmp_path):
    from models.stylegan2 import load_generator

    g, latent_avg, _ = P.train_generator(TINY_G, tmp_path / "a", progress=False)
    path = P.export_generator(g, latent_avg, "tiny_g", tmp_path / "out")["safetensors"]
    # synthesis lr 0 and no mapping steps: the run must keep exactly what it started from
    still = replace(TINY_G, lr=0.0, steps=2, mapping_steps=0)
    started, _, losses = P.train_generator(still, tmp_path / "b", progress=False, init=path)
    shipped, _ = load_generator(path, 16, style_dim=48, n_mlp=2, channels=dict(TINY_G.channels))
    assert len(losses) == 2
    for (k, v), u in zip(shipped.state_dict().items(), started.state_dict().values()):
        assert torch.equal(v, u), k
    recorded = torch.load(tmp_path / "b" / TINY_G.name / "ckpt.pt", weights_only=True)["mapping_rel_mse"]
    shipped_error = P.mapping_rel_mse(shipped, TINY_G)
    torch.manual_seed(TINY_G.seed)
    assert recorded == pytest.approx(shipped_error) and recorded < P.mapping_rel_mse(P.build_generator(TINY_G),
                                                                                    TINY_G)
    # with mapping steps, the file's mapping fit continues (and the synthesis is left alone at lr 0)
    refit, _, _ = P.train_generator(replace(still, mapping_steps=200), tmp_path / "f", progress=False, init=path)
    assert P.mapping_rel_mse(refit, TINY_G) < 0.9 * shipped_error
    synthesis = [k for k in shipped.state_dict() if not k.startswith("style.")]
    assert all(torch.equal(shipped.state_dict()[k], refit.state_dict()[k]) for k in synthesis)

    # the same command again resumes the checkpoint; --init is not read (here it no longer exists)
    _, _, more = P.train_generator(replace(still, steps=3), tmp_path / "b", progress=False,
                                   init=tmp_path / "gone.safetensors")
    assert len(more) == 1
    with pytest.raises(SystemExit, match="gone.safetensors: no such file"):
        P.train_generator(still, tmp_path / "c", progress=False, init=tmp_path / "gone.safetensors")
    other = P.export_generator(P.build_generator(replace(TINY_G, channels=((4, 8), (8, 8), (16, 8)))),
                               latent_avg, "other", tmp_path / "out")["safetensors"]
    with pytest.raises(SystemExit, match="other.safetensors: not a generator of this configuration"):
        P.train_generator(still, tmp_path / "d", progress=False, init=other)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(SystemExit, match="--init .*cut.safetensors: not a readable safetensors file"):
        P.train_generator(still, tmp_path / "g", progress=False, init=cut)
    with pytest.raises(SystemExit, match="--init: not an option of `pretrain_toy.py arcface`"):
        P.main(["arcface", "--init", str(path), "--work-dir", str(tmp_path / "e")])


def test_mapping_floor_is_the_best_any_direction_only_mapping_can_do():
    """PixelNorm gives the mapping z / |z| only: the floor (the mean of w* over the unseen norm) is above 0 and
    below the error of another direction-only predictor, w* of the direction scaled to the mean norm."""
    cfg = P.GeneratorConfig()
    floor = P.mapping_rel_mse_floor(cfg)
    z = P.heldout_codes(cfg)
    target = P.target_styles(z, cfg)
    rescaled = P.target_styles(z / z.norm(dim=1, keepdim=True) * z.norm(dim=1).mean(), cfg)
    assert 0.001 < floor < F.mse_loss(rescaled, target).item() / target.var().item()


def test_distillation_loss_and_psnr():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert P.distillation_loss(x, x).item() == 0.0
    shifted = x.roll(1, -1)
    assert P.distillation_loss(shifted, x) > P.distillation_loss(x * 0.99, x)
    assert torch.isclose(P.psnr(x - 0.02, x), torch.tensor(10 * np.log10(4 / 0.02**2), dtype=torch.float32),
                         atol=0.2).all()


def test_part_weights_make_an_uncertain_small_part_worth_drawing():
    """The fitted constant of a pixel that is an eye in 30% of the targets: skin under plain L1 (the
    median), the eye once the parts weigh 1 + 4 (drawn where their odds exceed 1 / 5)."""
    from data.toyfaces import L_EYE, SKIN

    n = 20
    real = torch.full((n, 3, 8, 8), 0.6)
    labels = torch.full((n, 8, 8), SKIN)
    real[:6, :, 3:5, 3:5], labels[:6, 3:5, 3:5] = -0.9, L_EYE  # 6 of 20 targets have the eye
    weight = P.part_weights(labels, 4.0)
    assert weight.shape == (n, 1, 8, 8) and weight.unique().tolist() == [1.0, 5.0]
    assert torch.equal(P.part_weights(labels, 0.0), torch.ones(n, 1, 8, 8))
    assert P.distillation_loss(real * 0.9, real, weight=torch.ones(n, 1, 8, 8)) == \
        P.distillation_loss(real * 0.9, real)
    fitted = {}
    for name, w in (("plain", None), ("weighted", weight)):
        x = torch.zeros(1, 3, 8, 8, requires_grad=True)
        opt = torch.optim.Adam([x], lr=0.05)
        for _ in range(300):
            loss = P.distillation_loss(x.expand(n, -1, -1, -1), real, weight=w)
            opt.zero_grad()
            loss.backward()
            opt.step()
        fitted[name] = x.detach()[0, :, 3:5, 3:5].mean().item()
    assert fitted["plain"] > 0.3 and fitted["weighted"] < -0.5, fitted


def test_discriminator_step_separates_real_from_fake_and_adds_lazy_r1():
    torch.manual_seed(0)
    d = P.build_discriminator(TINY_G)
    opt = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.0, 0.99))
    _, real, _ = P.generator_batch(replace(TINY_G, batch_size=8), torch.Generator().manual_seed(1))
    fake = F.avg_pool2d(real, 3, 1, 1)  # blurred reals: what an underfit distillation draws
    logs = [P.discriminator_step(d, opt, real, fake, r1_gamma=0.1, r1_interval=0) for _ in range(30)]
    assert logs[-1]["d_loss"] < logs[0]["d_loss"] and logs[-1]["d_real"] > logs[-1]["d_fake"]
    assert "r1" not in logs[-1]
    before = {k: v.clone() for k, v in d.state_dict().items()}
    with_r1 = P.discriminator_step(d, opt, real, fake, r1_gamma=0.1, r1_interval=4)
    assert with_r1["r1"] > 0 and any(not torch.equal(before[k], v) for k, v in d.state_dict().items())


@pytest.mark.slow
def test_adversarial_distillation_checkpoints_the_discriminator_and_resumes_exactly(tmp_path):
    cfg = replace(TINY_G, adversarial_weight=0.05, r1_every=2, perceptual_weight=0.1)
    straight, _, losses = P.train_generator(cfg, tmp_path / "a", progress=False)
    state = torch.load(tmp_path / "a" / cfg.name / "ckpt.pt", weights_only=True)
    assert {"d", "d_opt"} <= set(state) and state["step"] == cfg.steps
    P.train_generator(cfg, tmp_path / "b", progress=False, stop_at=4)
    resumed, _, more = P.train_generator(cfg, tmp_path / "b", progress=False)
    assert len(more) == 4 and np.allclose(losses[4:], more, atol=1e-4)
    for (k, v), u in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(v, u, atol=1e-5), k
    # the same schedule without the two terms draws something else: they are in the update
    plain, _, _ = P.train_generator(TINY_G, tmp_path / "c", progress=False)
    assert not torch.allclose(plain.to_rgbs[-1].conv.weight, straight.to_rgbs[-1].conv.weight)


def test_cli_overrides_reject_options_a_network_does_not_have():
    args = P.parse_args(["arcface", "--adversarial-weight", "0.1"])
    with pytest.raises(SystemExit, match="--adversarial-weight"):
        P.cli_overrides(args, P.ArcFaceConfig)
    assert P.cli_overrides(P.parse_args(["all", "--adversarial-weight", "0.1", "--steps", "5"]),
                           P.ArcFaceConfig) == {"steps": 5}
    assert P.cli_overrides(P.parse_args(["stylegan2", "--adversarial-weight", "0.1"]),
                           P.GeneratorConfig) == {"adversarial_weight": 0.1}
    assert P.cli_overrides(P.parse_args(["stylegan2", "--lr", "3e-3", "--batch-size", "4"]),
                           P.GeneratorConfig) == {"lr": 3e-3, "batch_size": 4}


def test_bad_device_stops_before_training(tmp_path):
    with pytest.raises(SystemExit, match="error: --device nonsense: not a torch device"):
        P.main(["arcface", "--device", "nonsense", "--work-dir", str(tmp_path)])
    assert not any(tmp_path.iterdir())


@pytest.mark.cuda
def test_generator_and_arcface_train_on_cuda_like_on_cpu(tmp_path):
    """Same codes on either device (drawn on the CPU), so a few steps land on nearly the same weights."""
    cfg = replace(TINY_G, steps=4, mapping_steps=10, perceptual_weight=0.0)
    on_cpu, _, cpu_losses = P.train_generator(cfg, tmp_path / "cpu", progress=False)
    on_gpu, _, gpu_losses = P.train_generator(cfg, tmp_path / "gpu", progress=False, device="cuda")
    assert next(on_gpu.parameters()).device.type == "cpu"  # handed back on the CPU, ready to export
    assert np.allclose(cpu_losses, gpu_losses, rtol=1e-2)
    arc = replace(TINY_ARC, steps=4)
    _, cpu_out = P.train_arcface(arc, tmp_path / "cpu", progress=False)
    _, gpu_out = P.train_arcface(arc, tmp_path / "gpu", progress=False, device="cuda")
    assert np.allclose(cpu_out["losses"], gpu_out["losses"], rtol=1e-2)


def test_generator_perceptual_term_grows_with_blur_on_the_shipped_arcface():
    """The generator's perceptual term: the project's LPIPS loss on the toy ID ArcFace's stages."""
    from losses.perceptual import PerceptualLoss

    loss = PerceptualLoss.from_backbone("irse", network=P.GeneratorConfig().perceptual_net)
    _, real, _ = P.generator_batch(replace(P.GeneratorConfig(), batch_size=8), torch.Generator().manual_seed(5))
    assert loss(real, real).item() == pytest.approx(0.0, abs=1e-6)
    blurred = [F.avg_pool2d(real, k, 1, k // 2) for k in (3, 5, 7)]
    losses = [loss(b, real).item() for b in blurred]
    assert losses[0] > 0 and losses == sorted(losses)


@pytest.mark.parametrize("recorded", [True, False])
def test_encoder_ships_a_run_fp16_with_its_generator_fingerprint(tmp_path, recorded):
    """`encoder --run` writes <out>/toy_ide/ (fp16 encoder + the run's config) that load_pipeline loads;
    the generator fingerprint is carried over, or (a run exported before fingerprints) stamped from the
    generator its config names."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from experiments.pipeline import load_pipeline
    from models.weights import state_fingerprint
    from tests.experiments.test_pipeline import make_tiny_run

    run, model = make_tiny_run(tmp_path / "world")
    source = run / "final" / "encoder.safetensors"
    if not recorded:
        save_file(load_file(str(source)), str(source))
    P.main(["encoder", "--run", str(run), "--out-dir", str(tmp_path / "out")])
    shipped = tmp_path / "out" / "toy_ide"
    assert (shipped / "config.yaml").read_text() == (run / "final" / "config.yaml").read_text()
    with safe_open(str(shipped / "encoder.safetensors"), framework="pt") as f:
        assert f.metadata()["generator"] == state_fingerprint(model.decoder)
        assert {f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()} == {torch.float16}
    first = (shipped / "encoder.safetensors").read_bytes()
    for _ in range(3):  # identical re-exports are byte-identical (a registered sha256 can be re-made)
        P.main(["encoder", "--run", str(run), "--out-dir", str(tmp_path / "out")])
        assert (shipped / "encoder.safetensors").read_bytes() == first
    pipe = load_pipeline(shipped)
    for (k, v), (k2, v2) in zip(sorted(pipe.model.encoder.state_dict().items()),
                                sorted(model.encoder.state_dict().items())):
        assert k == k2 and torch.equal(v, v2.half().to(v.dtype) if v.is_floating_point() else v2), k


@pytest.mark.slow
def test_check_measures_the_shipped_networks(tmp_path):
    """`check` on the shipped files: ONNX exports agree with torch, and the generator's distance to real
    renders is reported at fixed n and bias-free, on a scale of blurred real renders that grows with
    the blur (the toy FD network sees blur)."""
    out = P.check(P.PRETRAINED_DIR, tmp_path, fd_samples=200, n_inversions=2, inversion_steps=2,
                  fd_inf_samples=1000)
    for name in P.ARCFACES:
        # the ONNX graph resizes its 112 input back to 64 (bilinear): fine-part recognisers feel it (0.97-0.99)
        assert out[name]["onnx_torch_cosine"] > 0.95
    g = out["toy_stylegan2"]
    assert sorted(g["fd_by_n"]) == [400, 600, 800, 1000]  # 200 is below the 240 feature dimensions
    assert g["mapping_rel_mse"] > g["mapping_rel_mse_floor"] > 0
    assert g["fd_real_vs_real"] > g["fd_by_n"][400][1] > g["fd_by_n"][1000][1]  # the 1/n bias
    scale = [g["fd_inf_real_blurred_by_sigma"][s] for s in P.BLUR_SCALE_SIGMAS]
    assert scale == sorted(scale), scale
    assert (tmp_path / "check_samples.png").is_file() and (tmp_path / "check_inversions.png").is_file()
