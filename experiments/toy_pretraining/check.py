"""``check``: quality measurements of the shipped toy networks, as one dict (the README / issue figures)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from data.toyfaces.render import render_gaussian
from experiments.toy_pretraining.arcface import ARCFACES, ONNX_INPUT
from experiments.toy_pretraining.distillation import psnr
from experiments.toy_pretraining.generator import (
    GeneratorConfig,
    load_generator_file,
    mapping_rel_mse,
    mapping_rel_mse_floor,
)
from experiments.toy_pretraining.training import cosine_lr
from experiments.toy_pretraining.verification import embed, identity_report, report_photos, verification_accuracy
from losses.perceptual import PerceptualLoss
from models.irse import Backbone
from models.weights import sha256_of


def stage_features(net: Backbone, images: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """FD features: the 4 stage maps of ``net`` average-pooled and concatenated, (N, sum(stage_channels)).

    Images (N, 3, S, S) in [-1, 1] are quantised to uint8 first, as FID does.
    """
    from metrics.fid import quantize

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = quantize(images[i : i + batch_size]).float() / 127.5 - 1
            out.append(torch.cat([f.mean((2, 3)) for f in net.stage_features(x)], 1))
    return torch.cat(out).double()


def feature_fd(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D)."""
    from metrics.fid import StatsAccumulator, fid

    return fid(StatsAccumulator().update(a).stats(), StatsAccumulator().update(b).stats())


def generate(g, z: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """G([z]) with the stored noise: (N, 3, size, size), clamped to [-1, 1]."""
    with torch.no_grad():
        return torch.cat(
            [g([z[i : i + batch_size]], randomize_noise=False)[0] for i in range(0, len(z), batch_size)]
        ).clamp(-1, 1)


def invert(
    g,
    latent_avg: torch.Tensor,
    target: torch.Tensor,
    steps: int = 200,
    lr: float = 0.05,
    perceptual: PerceptualLoss | None = None,
    perceptual_weight: float = 1.0,
) -> torch.Tensor:
    """Optimisation-based W+ inversion: the W+ code (B, n_latent, style_dim) minimising MSE + L1 to the
    target (B, 3, S, S) in [-1, 1], plus ``perceptual_weight`` x the mean LPIPS of ``perceptual`` when one is
    given (Image2StyleGAN's pixel + perceptual objective; the target's features are computed once)."""
    w = latent_avg.detach().reshape(1, 1, -1).repeat(len(target), g.n_latent, 1).clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    if perceptual is not None:
        with torch.no_grad():
            target_features = perceptual.features(target)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, lr, warmup=10)
        fake, _ = g([w], input_is_latent=True, randomize_noise=False)
        loss = F.mse_loss(fake, target) + (fake - target).abs().mean()
        if perceptual is not None:
            loss = loss + perceptual_weight * perceptual.distance(fake, target_features)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return w.detach()


BLUR_SCALE_SIGMAS = (0.5, 1.0, 1.5, 2.0)
# independent draws of the fixed-n FD sets (real, real, samples) whose means make the FD ratio
FD_DRAWS = 8
# the inversions' LPIPS network: the ID-loss ArcFace, never the judge (toy_eval_arcface)
INVERSION_PERCEPTUAL_NET = "toy_arcface"


def check(
    out_dir: Path,
    work_dir: Path,
    fd_samples: int = 1000,
    n_inversions: int = 100,
    inversion_steps: int = 200,
    generator: bool = True,
    fd_inf_samples: int = 5000,
    inversion_perceptual_weight: float = 1.0,
    fd_draws: int = FD_DRAWS,
) -> dict:
    """Quality measurements of the shipped toy networks (the README / issue figures), as a dict.

    arcfaces: ``identity_report`` of each ArcFace loaded through the ID-loss loader, plus the agreement
    (mean cosine) of its ONNX export through insightface with the torch network. stylegan2: Frechet
    distances on toy eval ArcFace stage features (G samples vs real renders, and two disjoint real
    sets) at ``fd_samples`` each, averaged over ``fd_draws`` independent draws of the three sets (the
    ratio is that of the two means; the per-draw figures beside it), and extrapolated to infinitely
    many (``frechet_distance_at_infinity`` over the fifths of ``fd_inf_samples`` larger than the feature
    dimension, None when fewer than two are; the first draw's first ``fd_samples`` rows are its fixed-n
    sets; beside it, that of real renders blurred by each of ``BLUR_SCALE_SIGMAS`` pixels as a scale), and
    W+ inversions of ``n_inversions`` test photos a_i (``report_photos``): PSNR, evaluation-ArcFace
    similarity to the photo, to another photo b_i of the person (relative to the real-real similarity)
    and to b_i's look-alike, and the verification accuracy of inversions against look-alikes beside that
    of the real photos (``generator=False`` skips these). The inversions minimise pixel MSE + L1 plus
    ``inversion_perceptual_weight`` x LPIPS on the ID-loss ArcFace's stages (0: pixels only), never on the
    judge's own features.
    """
    import insightface
    import numpy as np
    import torchvision
    import torchvision.transforms.functional as TF

    from metrics.fid import frechet_distance_at_infinity
    from models.irse import load_arcface

    if fd_draws < 1:
        raise ValueError(f"fd_draws must be >= 1, got {fd_draws}")

    shipped = [p for p in sorted(out_dir.glob("toy_*")) if p.suffix in (".safetensors", ".onnx")]
    result: dict = {"files": {p.name: {"bytes": p.stat().st_size, "sha256": sha256_of(p)} for p in shipped}}
    nets = {}
    photos = report_photos()
    a = photos["a"]
    for name in ARCFACES:
        nets[name] = load_arcface(out_dir / f"{name}.safetensors")
        onnx_model = insightface.model_zoo.get_model(str(out_dir / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        x112 = F.interpolate(a[:64], size=(ONNX_INPUT, ONNX_INPUT), mode="bilinear", align_corners=False)
        onnx_emb = torch.from_numpy(onnx_model.forward(((x112 + 1) * 127.5).numpy().astype(np.float32)))
        agreement = F.cosine_similarity(onnx_emb, embed(nets[name], a[:64])).mean().item()
        result[name] = {
            **identity_report(nets[name]),
            "onnx_type": type(onnx_model).__name__,
            "onnx_torch_cosine": agreement,
        }

    if not generator:
        return result
    cfg = GeneratorConfig()
    g, latent_avg = load_generator_file(out_dir / f"{cfg.name}.safetensors", cfg)
    trunk = nets["toy_eval_arcface"]

    def draw(k: int, n: int) -> tuple[torch.Tensor, ...]:
        # draw k: real sets from seeds 100 + 3k and 101 + 3k, samples from 102 + 3k, n images each
        z = [torch.randn(n, cfg.style_dim, generator=torch.Generator().manual_seed(100 + 3 * k + i)) for i in range(3)]
        real1, real2 = (
            torch.cat([render_gaussian(zi[j : j + 250], cfg.size).image for j in range(0, n, 250)]) for zi in z[:2]
        )
        return real1, real2, generate(g, z[2])

    # the first draw is the pool of the bias-free distances and the sample grid
    real1, real2, fake = draw(0, max(fd_samples, fd_inf_samples))
    f_real1, f_real2, f_fake = (stage_features(trunk, x) for x in (real1, real2, fake))
    fd_fake_by_draw = [feature_fd(f_fake[:fd_samples], f_real1[:fd_samples])]
    fd_real_by_draw = [feature_fd(f_real2[:fd_samples], f_real1[:fd_samples])]
    # a real-real distance at fixed n is mostly finite-sample bias and varies from draw to draw as much as
    # the distance of two generators does (models/pretrained/README.md): a ratio to one draw is that noisy
    for k in range(1, fd_draws):
        r1, r2, fk = (stage_features(trunk, x) for x in draw(k, fd_samples))
        fd_fake_by_draw.append(feature_fd(fk, r1))
        fd_real_by_draw.append(feature_fd(r2, r1))
    fd_fake, fd_real = (sum(v) / len(v) for v in (fd_fake_by_draw, fd_real_by_draw))
    # the fixed-n ratio grows with n (the real-real distance is all finite-sample bias): report the
    # bias-free distances too, from the fifths of the pool that exceed the feature dimension
    sizes = [n for n in (fd_inf_samples * k // 5 for k in range(1, 6)) if n > f_fake.shape[1]]
    bias_free: dict = {
        "fd_inf_samples_vs_real": None,
        "fd_inf_real_vs_real": None,
        "fd_by_n": None,
        "fd_inf_real_blurred_by_sigma": None,
    }
    if len(sizes) >= 2:

        def fd_inf(features: torch.Tensor) -> tuple[float, dict[int, float]]:
            return frechet_distance_at_infinity(features, f_real1, sizes)

        (fake_inf, fake_curve), (real_inf, real_curve) = fd_inf(f_fake), fd_inf(f_real2)
        bias_free = {
            "fd_inf_samples_vs_real": fake_inf,
            "fd_inf_real_vs_real": real_inf,
            "fd_by_n": {n: [fake_curve[n], real_curve[n]] for n in sizes},
            # a scale for fd_inf: real renders blurred by a Gaussian of sigma pixels
            "fd_inf_real_blurred_by_sigma": {
                sigma: fd_inf(stage_features(trunk, TF.gaussian_blur(real2, 2 * math.ceil(3 * sigma) + 1, sigma)))[0]
                for sigma in BLUR_SCALE_SIGMAS
            },
        }
    work_dir.mkdir(parents=True, exist_ok=True)
    torchvision.utils.save_image(
        (torch.cat([real1[:16], fake[:16]]) + 1) / 2, str(work_dir / "check_samples.png"), nrow=16
    )
    target, other, alike = (photos[k][:n_inversions] for k in ("a", "b", "alike"))
    # the perceptual term reads the ID-loss ArcFace, a network the judge below was not trained with
    perceptual = None
    if inversion_perceptual_weight > 0:
        perceptual = PerceptualLoss.from_backbone("irse", network=nets[INVERSION_PERCEPTUAL_NET])
    w = invert(
        g, latent_avg, target, inversion_steps, perceptual=perceptual, perceptual_weight=inversion_perceptual_weight
    )
    with torch.no_grad():
        inverted = g([w], input_is_latent=True, randomize_noise=False)[0].clamp(-1, 1)
    torchvision.utils.save_image(
        (torch.cat([target[:16], inverted[:16]]) + 1) / 2, str(work_dir / "check_inversions.png"), nrow=16
    )
    # identity through the generator: the inversion of photo a_i against another photo b_i of the person
    # and b_i's look-alike, judged by the evaluation ArcFace (the metric network)
    judge = nets["toy_eval_arcface"]
    e_t, e_o, e_a, e_i = (embed(judge, x) for x in (target, other, alike, inverted))
    real_real = (e_t * e_o).sum(1).mean().item()
    inv_other = (e_i * e_o).sum(1).mean().item()
    result["toy_stylegan2"] = {
        "fd_samples_vs_real": fd_fake,
        "fd_real_vs_real": fd_real,
        "fd_ratio": fd_fake / max(fd_real, 1e-12),
        "fd_draws": fd_draws,
        "fd_samples_vs_real_by_draw": fd_fake_by_draw,
        "fd_real_vs_real_by_draw": fd_real_by_draw,
        "fd_ratio_by_draw": [a / max(b, 1e-12) for a, b in zip(fd_fake_by_draw, fd_real_by_draw)],
        "fd_features": "toy_eval_arcface stage features, avg-pooled",
        "fd_samples": fd_samples,
        "fd_inf_samples": fd_inf_samples,
        **bias_free,
        "mapping_rel_mse": mapping_rel_mse(g, cfg),
        "mapping_rel_mse_floor": mapping_rel_mse_floor(cfg),
        "inversion_psnr_mean": psnr(inverted, target).mean().item(),
        "inversion_sim_to_photo": (e_i * e_t).sum(1).mean().item(),
        "inversion_sim_to_other_photo": inv_other,
        "real_real_sim": real_real,
        "inversion_sim_to_lookalike": (e_i * e_a).sum(1).mean().item(),
        "inversion_verification_acc_lookalike": verification_accuracy((e_i * e_o).sum(1), (e_i * e_a).sum(1)),
        "real_verification_acc_lookalike": verification_accuracy((e_t * e_o).sum(1), (e_t * e_a).sum(1)),
        "inversion_vs_real_ratio": inv_other / real_real,
        "inversions": n_inversions,
        "inversion_steps": inversion_steps,
        "inversion_perceptual_weight": inversion_perceptual_weight,
        "inversion_perceptual_network": INVERSION_PERCEPTUAL_NET if perceptual is not None else None,
    }
    return result
