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
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
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
