"""Frechet distance between two Gaussians, the core of FID.

d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)

The cross term is computed from the symmetric positive semi-definite matrix S1^1/2 S2 S1^1/2
(which has the same eigenvalues as S1 S2) with two symmetric eigen-decompositions. This needs no
general matrix square root (pytorch-fid calls ``scipy.linalg.sqrtm(..., disp=False)``, whose
``disp`` argument SciPy 1.18 removes), never produces complex numbers, and stays finite for
rank-deficient covariances (fewer samples than feature dimensions).
"""

from __future__ import annotations

import numpy as np


def _clean_eigenvalues(eigval: np.ndarray) -> np.ndarray:
    """Zero the eigenvalues of a PSD matrix that are round-off (negative or below the rank tolerance).

    Without this, the null space of a rank-deficient covariance contributes sqrt(1e-16)-sized
    spurious terms to the trace of the square root (1e-8 relative error instead of 1e-13).
    """
    tolerance = eigval.size * np.finfo(np.float64).eps * max(float(eigval.max(initial=0.0)), 0.0)
    return np.where(eigval > tolerance, eigval, 0.0)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root (D, D) of a symmetric PSD matrix (D, D)."""
    eigval, eigvec = np.linalg.eigh(matrix)
    return (eigvec * np.sqrt(_clean_eigenvalues(eigval))) @ eigvec.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    mu1, mu2: (D,) means; sigma1, sigma2: (D, D) symmetric PSD covariances. Computed in float64.
    Returns a Python float >= 0 (up to round-off).
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(
            f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}"
        )
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise ValueError("statistics contain NaN or inf")
    # Estimated covariances are symmetric only up to round-off; eigh reads one triangle.
    sigma1 = (sigma1 + sigma1.T) / 2
    sigma2 = (sigma2 + sigma2.T) / 2

    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    middle_eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_cross = np.sqrt(_clean_eigenvalues(middle_eig)).sum()

    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_cross)


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) in float64 of features (N, D), N >= 2 (unbiased covariance)."""
    x = np.asarray(features, dtype=np.float64)
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance_at_infinity(a, b, sizes) -> tuple[float, dict[int, float]]:
    """The Frechet distance of features a (N, D) and b (M, D) free of its finite-sample bias.

    The plug-in distance between n samples of each set is biased upwards by about k / n (two samples
    of one distribution are never at 0), so a fixed-n distance, or a ratio of two, says as much about n
    as about the distributions. For each n in ``sizes`` (each <= N, M) the distance between the first
    n rows of a and of b is computed; least squares on FD(n) = FD_inf + k / n (Chong & Forsyth, 2020,
    "Effectively unbiased FID") gives FD_inf. The 1/n law holds once the covariances have full rank,
    so every n must exceed the feature dimension D. Rows should be in random order. Returns (FD_inf,
    {n: FD(n)}); FD_inf may be slightly negative for equal distributions.
    """
    sizes = sorted({int(n) for n in sizes})
    dim = np.shape(a)[1]
    if len(sizes) < 2 or sizes[0] <= dim or sizes[-1] > min(len(a), len(b)):
        raise ValueError(f"need >= 2 distinct sizes in ({dim}, {min(len(a), len(b))}] (above the feature "
                         f"dimension, within the sets), got {sizes}")
    curve = {n: frechet_distance(*feature_statistics(a[:n]), *feature_statistics(b[:n])) for n in sizes}
    design = np.stack([np.ones(len(sizes)), 1.0 / np.asarray(sizes, dtype=np.float64)], 1)
    (fd_inf, _), *_ = np.linalg.lstsq(design, np.asarray(list(curve.values())), rcond=None)
    return float(fd_inf), curve
