import numpy as np
import pytest

from metrics.bootstrap import bootstrap_ci


def test_interval_contains_point_estimate_and_is_deterministic():
    values = np.random.default_rng(0).normal(loc=0.5, scale=0.2, size=300)
    mean, lo, hi = bootstrap_ci(values)
    assert mean == pytest.approx(values.mean())
    assert lo < mean < hi
    assert bootstrap_ci(values) == (mean, lo, hi)
    assert bootstrap_ci(values, seed=1) != (mean, lo, hi)


def test_interval_shrinks_with_more_pairs():
    rng = np.random.default_rng(1)
    widths = []
    for n in (30, 300, 3000):
        _, lo, hi = bootstrap_ci(rng.normal(size=n), n_boot=500)
        widths.append(hi - lo)
    assert widths[0] > 2 * widths[1] > 4 * widths[2]
    # The normal-theory width for n = 3000 is 2 * 1.96 / sqrt(3000) = 0.0716.
    assert widths[2] == pytest.approx(2 * 1.96 / np.sqrt(3000), rel=0.15)


def test_group_resampling_widens_interval_for_correlated_groups():
    """Ten pairs per contour share a strong contour effect: pairs are not independent."""
    rng = np.random.default_rng(2)
    n_contours, per_contour = 40, 10
    contour_effect = np.repeat(rng.normal(scale=1.0, size=n_contours), per_contour)
    values = contour_effect + rng.normal(scale=0.1, size=n_contours * per_contour)
    groups = np.repeat(np.arange(n_contours), per_contour)

    mean_p, lo_p, hi_p = bootstrap_ci(values)
    mean_g, lo_g, hi_g = bootstrap_ci(values, groups=groups)
    assert mean_p == mean_g
    assert lo_g < mean_g < hi_g
    assert (hi_g - lo_g) > 2 * (hi_p - lo_p)
    # Grouped width ~ that of 40 independent contour means.
    expected = 2 * 1.96 * contour_effect[::per_contour].std() / np.sqrt(n_contours)
    assert hi_g - lo_g == pytest.approx(expected, rel=0.25)


def test_single_value_and_bad_arguments():
    assert bootstrap_ci([0.7]) == pytest.approx((0.7, 0.7, 0.7))
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], groups=[0])
