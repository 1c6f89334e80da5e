import numpy as np
import pytest
import torch
from torch import nn

from metrics.fid import (
    FeatureDetector,
    GaussianStats,
    InceptionDetector,
    StatsAccumulator,
    accumulate,
    cache_path,
    fid,
    fid_with_interval,
    frechet_distance_at_infinity,
    load_stats,
    quantize,
    reference_stats,
    save_stats,
)
from metrics.frechet import frechet_distance
from models.weights import MissingWeightsError


class RandomConvDetector(FeatureDetector):
    """Stand-in for Inception: a fixed random conv net, 16-d pooled features; counts its calls."""

    name = "test-random-conv"
    preprocessing = "uint8-div255"

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        for p in self.net.parameters():
            p.data = torch.randn(p.shape, generator=generator) * 0.5
        self.calls = 0

    def extract(self, images01):
        self.calls += 1
        return self.net(images01)


def _images(n, seed, noise=0.0, size=16):
    """(n, 3, size, size) smooth random images in [-1, 1], optionally with pixel noise."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    x = nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False)
    return (x + noise * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def _batches(images, sizes):
    start = 0
    for size in sizes:
        yield images[start : start + size]
        start += size


def test_quantize_maps_range_to_uint8_with_rounding_and_clipping():
    x = torch.tensor([-2.0, -1.0, -0.999, 0.0, 0.5, 1.0, 1.5]).view(1, 1, 1, 7)
    assert quantize(x).flatten().tolist() == [0, 0, 0, 128, 191, 255, 255]
    assert quantize(x).dtype == torch.uint8


def test_detector_rejects_float_input():
    with pytest.raises(TypeError, match="uint8"):
        RandomConvDetector()(torch.zeros(1, 3, 8, 8))


def test_streaming_equals_batch_computation_and_merges_across_shards():
    detector = RandomConvDetector()
    images = _images(23, seed=1)
    sizes = [5, 1, 9, 8]
    # Same batches as the stream: float32 convolutions round differently for other batch sizes.
    features = torch.cat([detector(quantize(b)) for b in _batches(images, sizes)]).numpy()

    streamed = accumulate(_batches(images, sizes), detector).stats()
    np.testing.assert_allclose(streamed.mu, features.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(streamed.sigma, np.cov(features, rowvar=False), rtol=1e-9, atol=1e-15)
    assert streamed.n == 23

    # Two "processes" with uneven shards; states summed as an all-reduce would.
    shard_a = accumulate(_batches(images[:6], [5, 1]), detector)
    shard_b = accumulate(_batches(images[6:], [9, 8]), detector)
    merged = StatsAccumulator.from_states(
        [shard_a.state(), {k: torch.from_numpy(v) for k, v in shard_b.state().items()}]
    ).stats()
    assert merged.n == 23
    np.testing.assert_allclose(merged.mu, streamed.mu, rtol=1e-12)
    np.testing.assert_allclose(merged.sigma, streamed.sigma, rtol=1e-9, atol=1e-15)


def test_end_to_end_fid_with_cache(tmp_path):
    detector = RandomConvDetector()
    reference = _images(40, seed=2)
    key = {"dataset": "unit-test", "resolution": 16}

    stats = reference_stats(_batches(reference, [16, 16, 8]), detector, key, tmp_path)
    calls = detector.calls
    assert calls == 3
    path = cache_path(key, detector, tmp_path)
    assert path.exists() and "unit-test" in path.name and list(tmp_path.iterdir()) == [path]

    def must_not_iterate():
        raise AssertionError("the cache should have been used")
        yield

    cached = reference_stats(must_not_iterate(), detector, key, tmp_path)
    assert detector.calls == calls
    np.testing.assert_array_equal(cached.mu, stats.mu)
    np.testing.assert_array_equal(cached.sigma, stats.sigma)
    assert cached.n == 40

    # Another resolution is another cache entry.
    assert cache_path({"dataset": "unit-test", "resolution": 32}, detector, tmp_path) != path

    same_distribution = accumulate([_images(40, seed=3)], detector).stats()
    noisy = accumulate([_images(40, seed=3, noise=0.3)], detector).stats()
    assert fid(stats, stats) == pytest.approx(0.0, abs=1e-9)
    assert 0 < fid(stats, same_distribution) < fid(stats, noisy)
    # Same value as the Frechet distance of the directly computed features.
    features = detector(quantize(_images(40, seed=3, noise=0.3))).numpy()
    direct = frechet_distance(features.mean(0), np.cov(features, rowvar=False), stats.mu, stats.sigma)
    assert fid(noisy, stats) == pytest.approx(direct, rel=1e-8)


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("serialisation failed")


def test_failed_write_leaves_previous_file_and_no_partial_file(tmp_path):
    path = tmp_path / "stats.npz"
    good = GaussianStats(np.arange(3.0), np.eye(3), 7)
    save_stats(path, good)
    bad_sigma = np.empty((3, 3), dtype=object)
    bad_sigma[...] = _Unpicklable()
    with pytest.raises(RuntimeError, match="serialisation failed"):
        save_stats(path, GaussianStats(np.arange(3.0), bad_sigma, 7))
    assert list(tmp_path.iterdir()) == [path]
    kept = load_stats(path)
    np.testing.assert_array_equal(kept.sigma, np.eye(3))
    assert kept.n == 7
    # A first write that fails leaves nothing at all.
    with pytest.raises(RuntimeError):
        save_stats(tmp_path / "new.npz", GaussianStats(np.arange(3.0), bad_sigma, 7))
    assert list(tmp_path.iterdir()) == [path]


def test_inception_detector_without_weights_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # the registry looks in $TORCH_HOME/hub/checkpoints
    with pytest.raises(MissingWeightsError, match="pt_inception-2015-12-05-6726825d.pth"):
        InceptionDetector()


@pytest.mark.slow
def test_inception_detector_loads_weights_file_and_extracts_pool3(tmp_path):
    """Random weights with the FID Inception's layout (same keys as torchvision's 1008-class
    Inception-v3 without aux logits); pytorch-fid loads them strictly."""
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(reference.state_dict(), path)

    detector = InceptionDetector(weights=path)
    loaded = detector.inception.blocks[0][0].conv.weight
    assert torch.equal(loaded, reference.Conv2d_1a_3x3.conv.weight)
    features = detector(quantize(_images(2, seed=4, size=32)))
    assert features.shape == (2, 2048) and features.dtype == torch.float64
    assert torch.isfinite(features).all() and (features >= 0).all()
    assert not torch.equal(features[0], features[1])


def _gaussian_blocks(rng, n_blocks, per_block, dim=6, shift=0.5):
    """States of ``n_blocks`` blocks of features from N(shift, I) (a fixed offset from the reference)."""
    return [StatsAccumulator().update(rng.normal(shift, 1.0, (per_block, dim))).state() for _ in range(n_blocks)]


def test_fid_interval_value_and_degenerate_single_block():
    rng = np.random.default_rng(0)
    reference = GaussianStats(np.zeros(6), np.eye(6), 10**6)
    blocks = _gaussian_blocks(rng, 8, 50)
    out = fid_with_interval(blocks, reference)
    assert out["value"] == pytest.approx(fid(StatsAccumulator.from_states(blocks).stats(), reference), rel=1e-12)
    assert out["n_blocks"] == 8 and out["se"] > 0
    assert out["ci"][0] < out["value"] < out["ci"][1]
    single = fid_with_interval(blocks[:1], reference)
    assert single["ci"] is None and single["se"] is None and single["n_blocks"] == 1


def test_fid_jackknife_se_matches_spread_of_independent_samples_and_shrinks():
    """The jackknife standard error agrees with the standard deviation of FID over independent output
    sets of the same size, and halves (about) when the number of samples is four times larger."""
    rng = np.random.default_rng(1)
    reference = GaussianStats(np.zeros(6), np.eye(6), 10**6)
    small = [fid_with_interval(_gaussian_blocks(rng, 10, 40), reference) for _ in range(200)]
    spread = np.std([r["value"] for r in small])
    se = np.mean([r["se"] for r in small])
    assert 0.7 < se / spread < 1.4, (se, spread)
    large = [fid_with_interval(_gaussian_blocks(rng, 10, 160), reference)["se"] for _ in range(50)]
    assert 0.35 < np.mean(large) / se < 0.65
    # coverage of the true FID (0.5^2 * 6 = 1.5 plus the finite-sample bias, small at this size)
    truth = 0.25 * 6
    coverage = np.mean([r["ci"][0] <= truth <= r["ci"][1] for r in small])
    assert coverage > 0.8, coverage


def test_distance_at_infinity_removes_the_finite_sample_bias():
    """Two samples of one Gaussian (true distance 0), then means 0 and delta (|delta|^2 = 1): the
    plug-in distance falls like 1/n, and the extrapolation is nearer the truth than the largest-n one."""
    rng = np.random.default_rng(0)
    d, n = 16, 4000
    a, b = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    sizes = [400, 800, 1600, 2400, 4000]
    same_inf, same = frechet_distance_at_infinity(a, b, sizes)
    assert same[400] > 3 * same[4000] > 0  # the bias, about 2 d / n
    assert abs(same_inf) < same[4000]
    shift = np.zeros(d)
    shift[0] = 1.0
    shifted_inf, shifted = frechet_distance_at_infinity(a, b + shift, sizes)
    assert all(v > 1.0 for v in shifted.values())
    assert abs(shifted_inf - 1.0) < abs(shifted[4000] - 1.0)
    assert abs(shifted_inf - 1.0) < 0.1
    with pytest.raises(ValueError, match="distinct sizes"):
        frechet_distance_at_infinity(a, b, [400, 400])
    with pytest.raises(ValueError, match="distinct sizes"):
        frechet_distance_at_infinity(a[:100], b, [50, 200])
    with pytest.raises(ValueError, match=r"above the feature dimension"):  # rank-deficient covariances
        frechet_distance_at_infinity(a, b, [16, 400])
