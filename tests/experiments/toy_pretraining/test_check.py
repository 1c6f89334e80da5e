"""`check` on the shipped toy networks."""

import pytest

from experiments.toy_pretraining.arcface import ARCFACES
from experiments.toy_pretraining.check import BLUR_SCALE_SIGMAS, check
from models.weights import PRETRAINED_DIR


@pytest.mark.slow
def test_check_measures_the_shipped_networks(tmp_path):
    """`check` on the shipped files: ONNX exports agree with torch, and the generator's distance to real
    renders is reported at fixed n and bias-free, on a scale of blurred real renders that grows with
    the blur (the toy FD network sees blur)."""
    out = check(PRETRAINED_DIR, tmp_path, fd_samples=200, n_inversions=2, inversion_steps=2, fd_inf_samples=1000)
    for name in ARCFACES:
        # the ONNX graph resizes its 112 input back to 64 (bilinear): fine-part recognisers feel it (0.97-0.99)
        assert out[name]["onnx_torch_cosine"] > 0.95
    g = out["toy_stylegan2"]
    assert sorted(g["fd_by_n"]) == [400, 600, 800, 1000]  # 200 is below the 240 feature dimensions
    assert g["mapping_rel_mse"] > g["mapping_rel_mse_floor"] > 0
    assert g["fd_real_vs_real"] > g["fd_by_n"][400][1] > g["fd_by_n"][1000][1]  # the 1/n bias
    scale = [g["fd_inf_real_blurred_by_sigma"][s] for s in BLUR_SCALE_SIGMAS]
    assert scale == sorted(scale), scale
    assert (tmp_path / "check_samples.png").is_file() and (tmp_path / "check_inversions.png").is_file()
