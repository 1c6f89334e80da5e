"""Evaluation metrics (issue 8): one module per metric, imported explicitly (no heavy imports here).

- ``metrics.frechet``: ``frechet_distance(mu1, sigma1, mu2, sigma2)`` (our own, float64).
- ``metrics.fid``: ``quantize``, ``FeatureDetector``, ``InceptionDetector``, ``StatsAccumulator``,
  ``accumulate``, ``reference_stats`` (cached .npz), ``fid``.
- ``metrics.lpips_metric``: ``lpips_distance`` (the networks: ``models.lpips_network.make_lpips``).
- ``metrics.idsim``: ``ArcFaceEmbedder`` (insightface + onnxruntime), ``arcface_crop``, ``idsim``.
- ``metrics.bootstrap``: ``bootstrap_ci(values, groups=None, ...)``.
- ``metrics.suite``: ``MetricSuite``, the three metrics built from the ``eval`` config.
"""
