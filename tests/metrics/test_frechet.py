import numpy as np
import pytest
from pytorch_fid.fid_score import calculate_frechet_distance

from metrics.frechet import frechet_distance


def _stats(samples):
    return samples.mean(axis=0), np.cov(samples, rowvar=False)


@pytest.mark.parametrize("dim", [2, 8, 64])
def test_matches_pytorch_fid_on_well_conditioned_stats(dim):
    rng = np.random.default_rng(dim)
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    a = rng.normal(size=(4 * dim + 20, dim))
    b = rng.normal(loc=0.3, size=(4 * dim + 20, dim)) @ (np.eye(dim) + 0.5 * mix)
    mu1, s1 = _stats(a)
    mu2, s2 = _stats(b)
    ours = frechet_distance(mu1, s1, mu2, s2)
    # pytorch-fid's function uses scipy.linalg.sqrtm(disp=False): deprecated but present in SciPy 1.17.
    theirs = calculate_frechet_distance(mu1, np.atleast_2d(s1), mu2, np.atleast_2d(s2))
    assert ours == pytest.approx(float(theirs), rel=1e-9, abs=1e-9)


def test_closed_forms():
    # 1-D: (m1 - m2)^2 + (sd1 - sd2)^2.
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9.0 + 1.0)
    # Commuting (diagonal) covariances: sum over dims of (sqrt(v1) - sqrt(v2))^2.
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.0])
    expected = ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert frechet_distance(np.zeros(3), np.diag(v1), np.zeros(3), np.diag(v2)) == pytest.approx(expected)


def test_identical_statistics_give_zero():
    rng = np.random.default_rng(1)
    mu, sigma = _stats(rng.normal(size=(200, 16)))
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9
    # Also when the covariance is singular (5 samples in 16 dims: rank 4).
    mu, sigma = _stats(rng.normal(size=(5, 16)))
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9


def test_rank_deficient_covariances_match_factor_formula():
    """Fewer samples than dims: compare with the SVD of the centred data factors.

    With S1 = A^T A and S2 = B^T B (A, B the centred samples / sqrt(n - 1)), the non-zero
    eigenvalues of S1 S2 are the squared singular values of A B^T, so tr sqrt(S1 S2) is the
    nuclear norm of the small matrix A B^T: no ill-conditioned square root is involved.
    """
    rng = np.random.default_rng(2)
    dim = 48
    x1 = rng.normal(size=(10, dim))
    x2 = rng.normal(loc=0.2, size=(13, dim)) * 1.5
    mu1, s1 = _stats(x1)
    mu2, s2 = _stats(x2)
    assert np.linalg.matrix_rank(s1) < dim and np.linalg.matrix_rank(s2) < dim

    a = (x1 - mu1) / np.sqrt(len(x1) - 1)
    b = (x2 - mu2) / np.sqrt(len(x2) - 1)
    nuclear = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    expected = ((mu1 - mu2) ** 2).sum() + (a**2).sum() + (b**2).sum() - 2 * nuclear

    ours = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(ours)
    assert ours == pytest.approx(expected, rel=1e-10)


def test_rejects_mismatched_or_nonfinite_inputs():
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.array([np.nan, 0.0]), np.eye(2), np.zeros(2), np.eye(2))
