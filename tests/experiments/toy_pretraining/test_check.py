"""`check` on the shipped toy networks, and its W+ inversion."""

import pytest
import torch

from experiments.toy_pretraining.arcface import ARCFACES
from experiments.toy_pretraining.check import BLUR_SCALE_SIGMAS, INVERSION_PERCEPTUAL_NET, check, invert
from experiments.toy_pretraining.generator import GeneratorConfig, load_generator_file
from experiments.toy_pretraining.verification import embed, report_photos
from losses.perceptual import PerceptualLoss
from models.irse import load_arcface
from models.weights import PRETRAINED_DIR


@pytest.mark.slow
def test_check_measures_the_shipped_networks(tmp_path):
    """`check` on the shipped files: ONNX exports agree with torch, and the generator's distance to real
    renders is reported at fixed n (the mean of independent draws, each draw beside it) and bias-free, on
    a scale of blurred real renders that grows with the blur (the toy FD network sees blur)."""
    out = check(
        PRETRAINED_DIR, tmp_path, fd_samples=200, n_inversions=2, inversion_steps=2, fd_inf_samples=1000, fd_draws=3
    )
    for name in ARCFACES:
        # the ONNX graph resizes its 112 input back to 32 (bilinear): fine-part recognisers feel it (0.97-0.99)
        assert out[name]["onnx_torch_cosine"] > 0.95
    g = out["toy_stylegan2"]
    assert sorted(g["fd_by_n"]) == [400, 600, 800, 1000]  # 200 is below the 240 feature dimensions
    assert g["mapping_rel_mse"] > g["mapping_rel_mse_floor"] > 0
    assert g["fd_real_vs_real"] > g["fd_by_n"][400][1] > g["fd_by_n"][1000][1]  # the 1/n bias
    fake, real = g["fd_samples_vs_real_by_draw"], g["fd_real_vs_real_by_draw"]
    assert g["fd_draws"] == len(fake) == len(real) == len(g["fd_ratio_by_draw"]) == 3
    assert len(set(real)) == 3 and len(set(fake)) == 3  # independent draws, not one set scored thrice
    assert g["fd_ratio"] == pytest.approx(sum(fake) / sum(real))
    assert min(fake) > max(real)  # samples are farther from real renders than other real renders are
    scale = [g["fd_inf_real_blurred_by_sigma"][s] for s in BLUR_SCALE_SIGMAS]
    assert scale == sorted(scale), scale
    assert (tmp_path / "check_samples.png").is_file() and (tmp_path / "check_inversions.png").is_file()


@pytest.mark.slow
def test_a_perceptual_term_makes_inversions_keep_the_identity():
    """W+ inversions of test photos with the LPIPS term on the ID-loss ArcFace are nearer (by the judge, the
    evaluation ArcFace) to another photo of the person than pixel-only inversions are: the generator draws
    the fine identity parts, and MSE + L1 alone does not find them."""
    cfg = GeneratorConfig()
    g, latent_avg = load_generator_file(PRETRAINED_DIR / f"{cfg.name}.safetensors", cfg)
    g.requires_grad_(False)
    perceptual = PerceptualLoss.from_backbone("irse", network=INVERSION_PERCEPTUAL_NET)
    judge = load_arcface(PRETRAINED_DIR / "toy_eval_arcface.safetensors")
    photos = report_photos(n_identities=8)
    other = embed(judge, photos["b"])

    def similarity_to_other_photo(loss: PerceptualLoss | None) -> torch.Tensor:
        w = invert(g, latent_avg, photos["a"], steps=80, perceptual=loss)
        with torch.no_grad():
            inverted = g([w], input_is_latent=True, randomize_noise=False)[0].clamp(-1, 1)
        return (embed(judge, inverted) * other).sum(1)

    pixels, with_perceptual = similarity_to_other_photo(None), similarity_to_other_photo(perceptual)
    assert with_perceptual.mean() > pixels.mean() + 0.2, (pixels, with_perceptual)
