"""FID: streamed feature statistics, cached reference statistics and pytorch-fid's Inception.

Pipeline: images (B, 3, H, W) in [-1, 1] -> ``quantize`` -> uint8 -> ``FeatureDetector`` ->
(B, D) float64 features -> ``StatsAccumulator`` (running n, sum x, sum x x^T in float64; never
all images or features in memory) -> ``GaussianStats`` (mu, sigma) -> ``fid``.

Multi-process use: each process accumulates its shard, then the three sums in ``state()`` are
summed over processes (an all-reduce, or gathering the states and ``StatsAccumulator.from_states``);
the result is identical to one process up to float64 summation order.

Reference statistics (e.g. the 30,000 CelebA-HQ images) are computed once and cached as .npz
(keys ``mu``, ``sigma`` as in pytorch-fid's .npz files, plus ``n`` and ``key``) under a name
derived from (dataset, resolution, detector, preprocessing), written atomically.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from metrics.frechet import frechet_distance
from models.weights import load_torch_file, resolve
from ops.atomic_write import atomic_path
from ops.shapes import assert_shape


def quantize(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float in [-1, 1] (values outside are clipped) -> uint8 (B, 3, H, W), rounded."""
    return (images.detach() * 127.5 + 127.5).round_().clamp_(0, 255).to(torch.uint8)


class GaussianStats(NamedTuple):
    """Feature statistics: mu (D,) and sigma (D, D) float64, from n samples."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def fid(stats_a: GaussianStats, stats_b: GaussianStats) -> float:
    """Frechet distance between two sets of feature statistics."""
    return frechet_distance(stats_a.mu, stats_a.sigma, stats_b.mu, stats_b.sigma)


class FeatureDetector(nn.Module, abc.ABC):
    """Feature network for FID: uint8 (B, 3, H, W) RGB -> (B, D) float64 features on the CPU.

    ``name`` and ``preprocessing`` identify the features in cache keys: change either whenever the
    network or the way images reach it changes. Subclasses implement ``extract`` on (B, 3, H, W)
    float32 in [0, 1] on the detector's device; it runs under ``torch.no_grad``.
    """

    name: str = ""
    preprocessing: str = ""

    @abc.abstractmethod
    def extract(self, images01: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float32 in [0, 1] -> (B, D) or (B, D, 1, 1) features."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"FeatureDetector expects uint8 images, got {images.dtype}; use quantize()")
        assert_shape(images, (None, 3, None, None), "FID images")
        device = next(iter(self.parameters()), torch.empty(0)).device
        with torch.no_grad():
            features = self.extract(images.to(device=device, dtype=torch.float32) / 255.0)
        return features.reshape(len(images), -1).to(device="cpu", dtype=torch.float64)


def _float64(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


class StatsAccumulator:
    """Running float64 sums n, sum x (D,), sum x x^T (D, D) of (B, D) feature batches."""

    def __init__(self):
        self.n = 0
        self.sum: np.ndarray | None = None
        self.sum_outer: np.ndarray | None = None

    def update(self, features) -> StatsAccumulator:
        """Add a (B, D) batch (torch tensor or array); returns self."""
        features = _float64(features)
        if features.ndim != 2:
            raise ValueError(f"expected (B, D) features, got shape {features.shape}")
        if self.sum is None:
            self.sum = np.zeros(features.shape[1])
            self.sum_outer = np.zeros((features.shape[1], features.shape[1]))
        self.n += len(features)
        self.sum += features.sum(axis=0)
        self.sum_outer += features.T @ features
        return self

    def state(self) -> dict[str, np.ndarray]:
        """Float64 sums {'n': (), 'sum': (D,), 'sum_outer': (D, D)}; add them across processes."""
        if self.sum is None:
            raise ValueError("no features accumulated")
        return {"n": np.array(float(self.n)), "sum": self.sum.copy(), "sum_outer": self.sum_outer.copy()}

    @classmethod
    def from_states(cls, states: Iterable[Mapping]) -> StatsAccumulator:
        """Accumulator holding the sum of several ``state()`` dicts (arrays or tensors)."""
        merged = cls()
        for state in states:
            arrays = {k: _float64(v) for k, v in state.items()}
            if merged.sum is None:
                merged.sum = np.zeros_like(arrays["sum"])
                merged.sum_outer = np.zeros_like(arrays["sum_outer"])
            merged.n += int(round(float(arrays["n"])))
            merged.sum += arrays["sum"]
            merged.sum_outer += arrays["sum_outer"]
        return merged

    def stats(self) -> GaussianStats:
        """Mean (D,) and unbiased covariance (D, D) (as numpy.cov); needs n >= 2."""
        if self.n < 2:
            raise ValueError(f"need at least 2 samples for a covariance, got {self.n}")
        mu = self.sum / self.n
        sigma = (self.sum_outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return GaussianStats(mu, (sigma + sigma.T) / 2, self.n)


def frechet_distance_at_infinity(a, b, sizes) -> tuple[float, dict[int, float]]:
    """The Frechet distance of features a (N, D) and b (M, D) (tensors or arrays) free of its
    finite-sample bias.

    The plug-in distance between n samples of each set is biased upwards by about k / n (two samples
    of one distribution are never at 0), so a fixed-n distance, or a ratio of two, says as much about n
    as about the distributions. For each n in ``sizes`` (each <= N, M) the distance between the first
    n rows of a and of b is computed; least squares on FD(n) = FD_inf + k / n (Chong & Forsyth, 2020,
    "Effectively unbiased FID") gives FD_inf. The 1/n law holds once the covariances have full rank,
    so every n must exceed the feature dimension D. Rows should be in random order. Returns (FD_inf,
    {n: FD(n)}); FD_inf may be slightly negative for equal distributions.
    """
    sizes = sorted({int(n) for n in sizes})
    dim = a.shape[1]
    if len(sizes) < 2 or sizes[0] <= dim or sizes[-1] > min(len(a), len(b)):
        raise ValueError(
            f"need >= 2 distinct sizes in ({dim}, {min(len(a), len(b))}] (above the feature "
            f"dimension, within the sets), got {sizes}"
        )
    acc_a, acc_b, curve, start = StatsAccumulator(), StatsAccumulator(), {}, 0
    for n in sizes:  # nested prefixes: each size adds only its new rows to the running sums
        acc_a.update(a[start:n])
        acc_b.update(b[start:n])
        curve[n], start = fid(acc_a.stats(), acc_b.stats()), n
    design = np.stack([np.ones(len(sizes)), 1.0 / np.asarray(sizes, dtype=np.float64)], 1)
    (fd_inf, _), *_ = np.linalg.lstsq(design, np.asarray(list(curve.values())), rcond=None)
    return float(fd_inf), curve


def fid_with_interval(block_states: Sequence[Mapping], reference: GaussianStats, alpha: float = 0.05) -> dict:
    """FID of the union of K disjoint blocks of outputs, with a delete-one-block jackknife interval.

    block_states: ``StatsAccumulator.state()`` dicts, one per block; a block holds whole contours (with
    all their identity pairs), so blocks are independent. Returns ``{"value", "ci": [lo, hi] | None,
    "se": float | None, "n_blocks": K}``: fid_(k) is the FID without block k, se = sqrt((K-1)/K *
    sum_k (fid_(k) - mean_k fid_(k))^2), and the interval is value -/+ t_{K-1, 1-alpha/2} * se (None for
    K < 2). A jackknife rather than a bootstrap: a bootstrap replicate repeats samples (about 63% of
    them distinct), which biases FID upwards, so percentile intervals would sit above the estimate.
    The reference statistics are taken as fixed (their sampling error is not in the interval).
    """
    from scipy.stats import t as student_t

    k = len(block_states)
    value = fid(StatsAccumulator.from_states(block_states).stats(), reference)
    if k < 2:
        return {"value": value, "ci": None, "se": None, "n_blocks": k}
    leave_out = np.array(
        [
            fid(StatsAccumulator.from_states(block_states[:i] + block_states[i + 1 :]).stats(), reference)
            for i in range(k)
        ]
    )
    se = float(np.sqrt((k - 1) / k * np.square(leave_out - leave_out.mean()).sum()))
    half = float(student_t.ppf(1 - alpha / 2, k - 1)) * se
    return {"value": value, "ci": [max(value - half, 0.0), value + half], "se": se, "n_blocks": k}


def accumulate(
    images: Iterable[torch.Tensor], detector: FeatureDetector, accumulator: StatsAccumulator | None = None
) -> StatsAccumulator:
    """Stream batches through the detector into an accumulator (a new one unless given).

    images: iterable of (B, 3, H, W) batches, uint8 or float in [-1, 1] (quantised first).
    """
    accumulator = StatsAccumulator() if accumulator is None else accumulator
    for batch in images:
        if batch.dtype != torch.uint8:
            batch = quantize(batch)
        accumulator.update(detector(batch))
    return accumulator


def cache_path(cache_key_parts: Mapping, detector: FeatureDetector, cache_dir) -> Path:
    """Path of the .npz for (cache_key_parts, e.g. dataset and resolution) + detector name/preprocessing."""
    parts = _cache_parts(cache_key_parts, detector)
    readable = re.sub(r"[^A-Za-z0-9.=+-]+", "_", "-".join(f"{k}={v}" for k, v in parts.items()))
    # The readable part may collide after sanitising or truncation; the digest of the full key cannot.
    digest = hashlib.sha256(_cache_key(cache_key_parts, detector).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{readable[:150]}-{digest}.npz"


def _cache_parts(cache_key_parts: Mapping, detector: FeatureDetector) -> dict:
    parts = {str(k): str(v) for k, v in cache_key_parts.items()}
    parts.update(detector=detector.name, preprocessing=detector.preprocessing)
    return dict(sorted(parts.items()))


def _cache_key(cache_key_parts: Mapping, detector: FeatureDetector) -> str:
    return json.dumps(_cache_parts(cache_key_parts, detector))


def save_stats(path, stats: GaussianStats, key: str = "") -> None:
    """Write stats to ``path`` (.npz) atomically (``ops.atomic_write``)."""
    with atomic_path(path) as tmp:
        np.savez(tmp, mu=stats.mu, sigma=stats.sigma, n=np.array(stats.n), key=np.array(key))


def load_stats(path, expected_key: str | None = None) -> GaussianStats:
    """Read a stats .npz (ours, or pytorch-fid's with only mu and sigma: n is then 0).

    expected_key: if given and the file records another cache key, raise ValueError.
    """
    with np.load(path, allow_pickle=False) as data:
        if expected_key is not None and "key" in data.files and str(data["key"]) != expected_key:
            raise ValueError(f"{path} holds statistics for {data['key']}, expected {expected_key}")
        n = int(data["n"]) if "n" in data.files else 0
        return GaussianStats(data["mu"].astype(np.float64), data["sigma"].astype(np.float64), n)


def reference_stats(
    images_iterable: Iterable[torch.Tensor], detector: FeatureDetector, cache_key_parts: Mapping, cache_dir
) -> GaussianStats:
    """Statistics of a reference image set, read from the cache or computed once and cached.

    cache_key_parts: e.g. ``{"dataset": "celebahq", "resolution": 256}``; the detector's ``name``
    and ``preprocessing`` are added. ``images_iterable`` is only iterated on a cache miss.
    """
    path = cache_path(cache_key_parts, detector, cache_dir)
    key = _cache_key(cache_key_parts, detector)
    if path.exists():
        return load_stats(path, expected_key=key)
    stats = accumulate(images_iterable, detector).stats()
    save_stats(path, stats, key)
    return stats


@contextlib.contextmanager
def _pytorch_fid_weights_from(path: Path):
    """Make pytorch-fid's ``fid_inception_v3`` load its state dict from ``path``, not the internet.

    pytorch-fid fetches the weights with the module-level ``load_state_dict_from_url`` and has no
    path argument; swapping that one name for the duration of the construction keeps the rest of
    its model code (structure, strict loading) unchanged.
    """
    import pytorch_fid.inception as fid_inception

    def load_local(url, *args, **kwargs):
        return load_torch_file(path)

    original = fid_inception.load_state_dict_from_url
    fid_inception.load_state_dict_from_url = load_local
    try:
        yield fid_inception
    finally:
        fid_inception.load_state_dict_from_url = original


class InceptionDetector(FeatureDetector):
    """pytorch-fid's FID Inception-v3, 2048-d pool3 features, weights from the registry.

    weights: path to ``pt_inception-2015-12-05-6726825d.pth``; default the registry's
    ``fid_inception``, resolved with ``root=weights_root``; the registry keeps it in
    $TORCH_HOME/hub/checkpoints (MissingWeightsError naming the file when absent). Input handling
    is pytorch-fid's: [0, 1] -> bilinear resize to 299 -> [-1, 1].
    """

    name = "pytorch-fid-inception-v3-pool3"
    preprocessing = "uint8-div255-bilinear299"

    def __init__(self, weights=None, weights_root=None):
        super().__init__()
        path = Path(weights) if weights is not None else resolve("fid_inception", root=weights_root)
        with _pytorch_fid_weights_from(path) as fid_inception:
            self.inception = fid_inception.InceptionV3([3], resize_input=True, normalize_input=True)
        self.eval()

    def extract(self, images01: torch.Tensor) -> torch.Tensor:
        return self.inception(images01)[0]
