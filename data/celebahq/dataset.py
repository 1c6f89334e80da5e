"""CelebA-HQ as the project's Dataset: contour/identity pairs over the files of ``data.celebahq.files``.

The dataset reads ``ideface-prepare``'s label maps and sketches when present and computes the same thing
otherwise. Items listed as bad by ``prepare`` are left out of the dataset with a warning and a count
(``excluded_bad``); any other unusable file raises with its name when read. Nothing is dropped
silently.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from data.celebahq.files import (
    CelebAHQIndex,
    MissingDataError,
    PreparedCache,
    Record,
    build_label_map,
    default_cache_dir,
    load_photo,
)
from data.conditions import CELEBAMASK_CLASSES, make_condition
from data.images import load_image, load_label_map
from data.pairs import (
    TestManifest,
    TrainPairSampler,
    apply_draw,
    check_mode,
    item_generator,
    load_or_build_manifest,
)
from ops.resize import resize_to


class CelebAHQ(Dataset):
    """CelebA-HQ contour/identity pairs; items as in SPEC: a dict with

    ``contour`` (C, S, S) (lr: 3 ch in [-1, 1]; mask: 19 ch one-hot; sketch: 1 ch in [-1, 1]),
    ``target`` (3, S, S) in [-1, 1] (the contour's photo), ``identity`` (3, S, S) in [-1, 1],
    ``identity_id`` (CelebA identity of the identity image), ``same_identity`` (bool), ``index``.

    ``split="train"``: item i is photo i of the split with an identity image drawn per epoch
    (``data.pairs.TrainPairSampler`` with ``item_generator(seed, epoch, i)``; the training loop
    calls ``set_epoch``). ``"val"``/``"test"``: item i is row i of the test manifest
    (``seed`` and ``n_per_contour`` pick it; keep ``seed`` fixed across runs to compare methods on
    the same pairs). ``condition`` lr | mask | sketch at ``input_size`` S; ``lr_size`` for lr.
    ``sketch_dir``: an external sketch set (``<idx>.png`` or ``.jpg``), used instead of XDoG.
    """

    @dataclass
    class Options:
        """No settings of its own beyond ``data.root``: ``data.options`` stays empty."""

    RENAMED_KEYS: dict[str, str] = {}

    @classmethod
    def from_config(cls, data_cfg, options: Options, **common) -> CelebAHQ:
        """From the run config's ``data`` section (its ``root``) and the arguments every dataset takes."""
        return cls(root=data_cfg.root, **common)

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        condition: str = "lr",
        input_size: int = 256,
        lr_size: int = 32,
        pairing: str = "same_identity",
        seed: int = 0,
        cache_dir: str | os.PathLike | None = None,
        n_per_contour: int = 10,
        sketch_dir: str | os.PathLike | None = None,
    ):
        if root is None:
            raise MissingDataError("no CelebA-HQ root given (data.root=<folder>); see data/celebahq/files.py")
        self.index = CelebAHQIndex(root)
        self.seed, self.epoch = seed, 0
        self.split, self.condition_name, self.pairing = split, condition, check_mode(pairing)
        self.input_size = input_size
        self.condition = make_condition(condition, out_size=input_size, lr_size=lr_size)
        self.cache = PreparedCache(cache_dir if cache_dir is not None else default_cache_dir(root))
        self.sketch_dir = Path(sketch_dir) if sketch_dir is not None else None
        records = self.index.split(split)
        bad = {b.idx for b in self.cache.read_bad_files()}
        self.records = [r for r in records if r.idx not in bad]
        self.excluded_bad = len(records) - len(self.records)
        if self.excluded_bad:
            warnings.warn(
                f"CelebA-HQ {split}: {self.excluded_bad} images left out, listed as bad in {self.cache.bad_files_path}",
                stacklevel=2,
            )
        self._position = {r.key: i for i, r in enumerate(self.records)}
        items = [(r.key, r.identity) for r in self.records]
        self.sampler: TrainPairSampler | None = None
        self.manifest: TestManifest | None = None
        if split == "train":
            self.sampler = TrainPairSampler(items, pairing)
        else:
            self.manifest = load_or_build_manifest(
                self.cache.manifest(split, pairing, n_per_contour, seed), items, n_per_contour, pairing, seed
            )

    def __len__(self) -> int:
        return len(self.records) if self.manifest is None else len(self.manifest.rows)

    def _record(self, key: str) -> Record:
        if key not in self._position:
            raise KeyError(
                f"manifest {self.manifest.path} names image {key}, which is not in the "
                f"{self.split} split (or is listed as bad); delete the manifest to rebuild it"
            )
        return self.records[self._position[key]]

    def _labels(self, rec: Record) -> torch.Tensor:
        cached = self.cache.labels(self.input_size, rec.idx)
        if cached.is_file():
            return load_label_map(cached, len(CELEBAMASK_CLASSES))
        return build_label_map(self.index, rec.idx, self.input_size)

    def _sketch(self, rec: Record) -> torch.Tensor | None:
        if self.sketch_dir is not None:
            for ext in (".png", ".jpg"):
                path = self.sketch_dir / f"{rec.idx}{ext}"
                if path.is_file():
                    return load_image(path, channels=1)
            raise MissingDataError(
                f"no sketch for CelebA-HQ image {rec.idx} in {self.sketch_dir} "
                f"(expected {rec.idx}.png or {rec.idx}.jpg)"
            )
        cached = self.cache.sketch(self.input_size, rec.idx)
        return load_image(cached, channels=1) if cached.is_file() else None

    def _contour(self, rec: Record, photo: torch.Tensor) -> torch.Tensor:
        if self.condition_name == "mask":
            return self.condition(labels=self._labels(rec))
        if self.condition_name == "sketch":
            return self.condition(photo, sketch=self._sketch(rec))
        return self.condition(photo)

    def _face(self, rec: Record) -> torch.Tensor:
        return resize_to(load_photo(self.index, rec.idx)[None], self.input_size)[0].clamp(-1.0, 1.0)

    def set_epoch(self, epoch: int) -> None:
        """Training draws depend on (seed, epoch, index); the training loop sets the epoch."""
        self.epoch = epoch

    def photo_batches(self, batch_size: int = 16):
        """Every photo of the split, in order, as the pairs show them: yields (keys list[str], CelebA identity
        ids (B,) int64, faces (B, 3, S, S) in [-1, 1]); the identity-following metric's gallery."""
        for start in range(0, len(self.records), batch_size):
            records = self.records[start : start + batch_size]
            yield (
                [r.key for r in records],
                torch.tensor([r.identity for r in records], dtype=torch.long),
                torch.stack([self._face(r) for r in records]),
            )

    def __getitem__(self, i: int) -> dict:
        if self.manifest is None:
            rec = self.records[i]
            rng = item_generator(self.seed, self.epoch, i)
            draw = self.sampler.draw(i, rng)
            partner = self.records[draw.index]
            same = draw.same_identity
        else:
            row = self.manifest.rows[i]
            rec, partner, same = self._record(row.contour), self._record(row.identity), row.same_identity
            draw = rng = None
        photo = load_photo(self.index, rec.idx)
        target = resize_to(photo[None], self.input_size)[0].clamp(-1.0, 1.0)
        identity = target.clone() if partner.idx == rec.idx else self._face(partner)
        if draw is not None:
            identity = apply_draw(identity, draw, rng)
        return {
            "contour": self._contour(rec, photo),
            "target": target,
            "identity": identity,
            "identity_id": partner.identity,
            "same_identity": bool(same),
            "index": i,
        }

    @property
    def manifest_path(self) -> Path | None:
        """The test manifest file (val/test; None for train, or when the cache was not writable)."""
        return self.manifest.path if self.manifest is not None else None

    def pairing_stats(self) -> dict:
        """What to log about the pairs: mode, fallbacks (train) or manifest path/hash/counts (val/test)."""
        stats = {"pairing": self.pairing, "split": self.split, "excluded_bad_files": self.excluded_bad}
        if self.sampler is not None:
            stats.update(self.sampler.stats())
        else:
            m = self.manifest
            stats.update(
                manifest=str(m.path) if m.path else None,
                manifest_hash=m.hash,
                pairs=len(m.rows),
                contours=m.n_contours,
                excluded_contours=len(m.excluded),
            )
        return stats
