"""The three metrics of Tables 1 and 2 as one evaluation bundle, built from the ``eval`` config.

- LPIPS between each output and the real face of its contour (``eval.lpips_backbone``: the real
  AlexNet v0.1, or ``irse``: the lpips code path on the stage features of ``eval.feature_network``), at
  ``eval.lpips_resolution``;
- IDSIM between each identity image and its output, through insightface + onnxruntime
  (``eval.idsim_model``: a registry name, ``w600k_r50.onnx`` or a world's evaluation ArcFace exported to ONNX);
- with a gallery of the test photos (``set_gallery``), the same network's similarity of each output to
  both people of its pair and the identity-following rate (``metrics.identity_following``);
- with ``eval.dlib_judge``, a second identity judge of another network family, never a loss: dlib's
  ResNet descriptor distance between identity image and output (``metrics.dlib_idsim``);
- FID between all outputs and a reference image set (``eval.fid_detector``: pytorch-fid's
  Inception, or ``embedding``: the embeddings of ``eval.feature_network``), from float64 running sums that chunks and
  processes add up.

``describe()`` says which networks produced the numbers, so figures of different worlds are never confused.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from metrics.fid import (
    FeatureDetector,
    GaussianStats,
    InceptionDetector,
    StatsAccumulator,
    fid_with_interval,
    quantize,
    reference_stats,
)
from metrics.identity_following import PersonTemplates
from ops.resize import resize_to
from ops.shapes import assert_shape

# The one list of FID feature networks (``eval.fid_detector``): pytorch-fid's Inception, or the embedding
# of ``eval.feature_network`` (a world whose faces no Inception was trained on).
FID_DETECTORS = ("inception", "embedding")


class EmbeddingDetector(FeatureDetector):
    """FID features from an ArcFace-style embedding network (``eval.feature_network``; a world without
    an Inception trained on its faces, such as the toy world, uses its evaluation ArcFace).

    network: (B, 3, S, S) in [-1, 1] -> (B, D) (an ``models.irse.Backbone``); uint8 images are
    mapped to [-1, 1] and resized to the network's ``input_size`` (bilinear, antialiased).
    """

    preprocessing = "uint8-to-pm1-bilinear-antialias"

    def __init__(self, network: torch.nn.Module, name: str):
        super().__init__()
        self.network = network.eval()
        self.name = f"embedding-{name}"
        self.input_size = int(getattr(network, "input_size", 112))
        self.preprocessing = f"{EmbeddingDetector.preprocessing}{self.input_size}"

    def extract(self, images01: torch.Tensor) -> torch.Tensor:
        return self.network(resize_to(images01 * 2 - 1, self.input_size, "bilinear"))


class MetricSuite:
    """Per-pair LPIPS and IDSIM plus FID sums for batches of outputs; see the module docstring."""

    def __init__(self, cfg: DictConfig, lpips_model, embedder, detector: FeatureDetector, device, dlib_judge=None):
        self.cfg = cfg
        self.dlib_judge = dlib_judge
        self.lpips_model = lpips_model.to(device)
        self.embedder = embedder
        self.detector = detector.to(device)
        self.device = device
        self.templates: PersonTemplates | None = None

    def set_gallery(self, photo_batches) -> None:
        """Embed the test photos ((keys, person ids, images) batches: a dataset's ``photo_batches``) as the
        people templates of the identity-following figures."""
        self.templates = PersonTemplates.from_batches(photo_batches, self.embedder)

    @classmethod
    def from_config(cls, cfg: DictConfig, device: torch.device) -> MetricSuite:
        from metrics.idsim import ArcFaceEmbedder
        from models.irse import load_arcface
        from models.lpips_network import make_lpips

        e = cfg.eval
        feature_net = None
        if e.lpips_backbone == "irse" or e.fid_detector == "embedding":
            feature_net = load_arcface(e.feature_network, root=cfg.weights_root)
        lpips_model = make_lpips(e.lpips_backbone, network=feature_net)
        embedder = ArcFaceEmbedder.from_registry(
            e.idsim_model, providers=list(e.providers), crop=list(e.id_crop), weights_root=cfg.weights_root
        )
        detector = (
            InceptionDetector()
            if e.fid_detector == "inception"
            else EmbeddingDetector(feature_net, Path(str(e.feature_network)).stem)
        )
        dlib_judge = None
        if e.dlib_judge:
            from metrics.dlib_idsim import DlibEmbedder

            dlib_judge = DlibEmbedder()
        return cls(cfg, lpips_model, embedder, detector, device, dlib_judge=dlib_judge)

    @torch.no_grad()
    def per_pair(
        self, output: torch.Tensor, target: torch.Tensor, identity: torch.Tensor, rows=None
    ) -> dict[str, np.ndarray]:
        """outputs, targets, identities (B, 3, *, *) in [-1, 1] -> {'lpips': (B,), 'idsim': (B,), and the
        FID sums 'fid_n', 'fid_sum', 'fid_sum_outer' of this batch}. With ``rows`` (the B manifest rows:
        ``contour``, ``contour_identity_id``, ``identity``, ``identity_id``) and a gallery (``set_gallery``),
        also ``PersonTemplates.scores``' three (B,) arrays; with the dlib judge, 'dlib_distance' (B,)."""
        from metrics.lpips_metric import lpips_distance

        assert_shape(output, (None, 3, None, None), "outputs")
        assert_shape(target, (len(output), 3, None, None), "targets")
        assert_shape(identity, (len(output), 3, None, None), "identities")
        output = output.float().clamp(-1, 1)
        out_res = resize_to(output, target.shape[-2:], "bilinear")
        e_out, e_identity = self.embedder(output), self.embedder(identity)
        values = {
            "lpips": lpips_distance(out_res, target, self.lpips_model, self.cfg.eval.lpips_resolution).cpu().numpy(),
            "idsim": (e_out * e_identity).sum(axis=1),
        }
        if rows is not None and self.templates is not None:
            values.update(
                self.templates.scores(
                    e_out,
                    [r.contour for r in rows],
                    [r.contour_identity_id for r in rows],
                    [r.identity for r in rows],
                    [r.identity_id for r in rows],
                )
            )
        if self.dlib_judge is not None:
            from metrics.dlib_idsim import dlib_distance

            values["dlib_distance"] = dlib_distance(identity, output, self.dlib_judge).cpu().numpy()
        state = StatsAccumulator().update(self.detector(quantize(output))).state()
        values.update({f"fid_{k}": v for k, v in state.items()})
        return values

    def reference(self, images: Iterable[torch.Tensor]) -> GaussianStats:
        """Statistics of the real reference set (cached .npz; computed once): ``images`` yields its batches
        (B, 3, S, S) in [-1, 1] and is only read when the cache misses (the world's ``reference_images``)."""
        e = self.cfg.eval
        parts = {"dataset": e.fid_reference, "resolution": self.cfg.data.input_size, "n": e.fid_reference_size}
        cache_dir = Path(self.cfg.output_dir).expanduser() / "fid_cache"
        return reference_stats(images, self.detector, parts, cache_dir)

    def fid(self, chunks: list, reference_images: Iterable[torch.Tensor], n_blocks: int = 20) -> dict:
        """FID of the outputs whose per-chunk sums are in ``chunks`` (mappings with fid_* arrays, in manifest
        order, each of whole contours), with its jackknife interval over ``n_blocks`` blocks of
        consecutive chunks (see :func:`metrics.fid.fid_with_interval`); ``reference_images`` as in
        :meth:`reference`."""
        states = [{"n": c["fid_n"], "sum": c["fid_sum"], "sum_outer": c["fid_sum_outer"]} for c in chunks]
        blocks = [
            StatsAccumulator.from_states(part).state()
            for part in np.array_split(np.array(states, dtype=object), min(n_blocks, len(states)))
        ]
        return fid_with_interval(blocks, self.reference(reference_images))

    def describe(self) -> dict[str, str]:
        e = self.cfg.eval
        backbone = e.lpips_backbone
        return {
            "lpips": f"lpips-{backbone}" + (f"({e.feature_network})" if backbone == "irse" else ""),
            "idsim": f"insightface-onnx({self.embedder.model_path})",
            "fid": f"{self.detector.name} vs {e.fid_reference} (n<={e.fid_reference_size})",
            "world": self.cfg.world,
            **({"dlib": self.dlib_judge.name} if self.dlib_judge is not None else {}),
        }
