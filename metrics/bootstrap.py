"""Percentile bootstrap confidence intervals for per-pair metric values.

With ``groups`` (e.g. the contour index of each pair: every contour is paired with several
identity images, so its pairs are not independent) whole groups are resampled, which keeps the
within-contour correlation inside each bootstrap replicate.
"""

from __future__ import annotations

import numpy as np


def bootstrap_ci(values, groups=None, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0):
    """Mean of ``values`` and its (1 - alpha) percentile bootstrap interval.

    values: (N,) per-pair metric values. groups: optional (N,) hashable labels; if given, groups
    are drawn with replacement and a replicate's statistic is the mean over all pairs of the drawn
    groups. Returns ``(mean, lo, hi)`` as floats; deterministic for a given ``seed``.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if groups is None:
        group_index = np.arange(values.size)
    else:
        groups = np.asarray(groups).reshape(-1)
        if groups.shape != values.shape:
            raise ValueError(f"groups has {groups.size} entries for {values.size} values")
        _, group_index = np.unique(groups, return_inverse=True)
    n_groups = int(group_index.max()) + 1
    group_sums = np.bincount(group_index, weights=values, minlength=n_groups)
    group_sizes = np.bincount(group_index, minlength=n_groups).astype(np.float64)

    rng = np.random.default_rng(seed)
    # Multiplicity of each group in each replicate: the same as drawing n_groups groups with
    # replacement, without materialising (n_boot, N) index arrays.
    counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot)
    replicate_means = (counts @ group_sums) / (counts @ group_sizes)
    lo, hi = np.quantile(replicate_means, [alpha / 2, 1 - alpha / 2])
    return float(values.mean()), float(lo), float(hi)
