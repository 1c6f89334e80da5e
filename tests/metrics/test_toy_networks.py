"""The toy world's LPIPS and FID analogues with the shipped network (the toy evaluation ArcFace, the
``eval.feature_network`` of world=toy): on real toy faces both distances grow with the strength of
blur, noise and occlusion."""

import pytest
import torch

from data.toyfaces.render import FACTOR_DIMS, render_gaussian
from experiments.config import load_config
from metrics.fid import accumulate, fid, quantize
from metrics.lpips_metric import lpips_distance
from metrics.suite import EmbeddingDetector
from models.irse import load_arcface
from models.lpips_network import make_lpips

from .test_lpips_metric import _degradations


@pytest.fixture(scope="module")
def toy_world():
    cfg = load_config(["world=toy"])
    assert cfg.eval.lpips_backbone == "irse" and cfg.eval.fid_detector == "embedding"
    network = load_arcface(cfg.eval.feature_network)
    codes = torch.randn(100, FACTOR_DIMS, generator=torch.Generator().manual_seed(0))
    return network, render_gaussian(codes, size=cfg.data.input_size).image


def test_shipped_toy_lpips_grows_with_degradation(toy_world):
    network, faces = toy_world
    model = make_lpips("irse", network=network)
    faces = faces[:8]
    for name, degraded in _degradations(faces).items():
        distances = (
            lpips_distance(faces.repeat(len(degraded), 1, 1, 1), torch.cat(degraded), model, size=None)
            .view(len(degraded), len(faces))
            .mean(1)
        )
        assert (distances[1:] > distances[:-1]).all() and distances[0] > 0, f"{name}: {distances}"


def test_shipped_toy_fid_grows_with_degradation(toy_world):
    """Against the statistics of the same faces undegraded (FID 0), so the trend is not hidden by the
    sampling noise between two real sets."""
    network, faces = toy_world
    detector = EmbeddingDetector(network, "toy_eval_arcface")
    reference = accumulate([quantize(faces)], detector).stats()
    # 0 up to the matrix square root's rounding on a rank-deficient covariance (100 faces, 128 features): ~1e-7
    assert fid(accumulate([quantize(faces)], detector).stats(), reference) == pytest.approx(0.0, abs=1e-5)
    for name, degraded in _degradations(faces).items():
        distances = [fid(accumulate([quantize(x)], detector).stats(), reference) for x in degraded]
        # The look-invariant evaluation ArcFace's embedding is not strictly monotonic in noise strength (0.33,
        # 0.61, 0.58, 0.92 at n=100): the strongest degradation still scores well above the weakest.
        assert min(distances) > 0 and distances[-1] > 2 * distances[0], f"{name}: {distances}"
