"""CelebA-HQ in the CelebAMask-HQ layout, with CelebA's identities and identity-disjoint splits.

Expected under ``root`` (REFERENCE.md section 8)::

    CelebA-HQ-img/<idx>.jpg                          faces, 1024x1024 (any square size works)
    CelebAMask-HQ-mask-anno/<idx // 2000>/<idx:05d>_<class>.png   part masks, 512x512
    CelebA-HQ-to-CelebA-mapping.txt                  header "idx orig_idx orig_file", then rows
    identity_CelebA.txt     (or Anno/identity_CelebA.txt)       "000001.jpg 2880"
    list_eval_partition.txt (or Eval/list_eval_partition.txt)   "000001.jpg 0"  (0 train, 1 val, 2 test)

The first three come with CelebAMask-HQ, the last two with CelebA (``SOURCES``). Each CelebA-HQ
image is linked through ``orig_file`` to its CelebA identity and partition; CelebA's partition is
identity-disjoint, so the train/val/test splits here are too. The paper reports 2,842 test
images (28,420 pairs); ``count_report`` prints what the files give next to that.

``ideface-prepare celebahq --root <root>`` builds label maps and sketches once into a cache
folder (``<root>/ideface-prepared`` unless ``--out``/``cache_dir``) plus the test manifests and a
list of bad files; the dataset reads them when present and computes the same thing otherwise.
Items listed as bad by ``prepare`` are left out of the dataset with a warning and a count
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

from data.conditions import CELEBAMASK_CLASSES, make_condition, merge_mask, xdog_sketch
from data.images import BadImageError, load_image, load_label_map
from data.pairs import (
    TestManifest,
    TrainPairSampler,
    apply_draw,
    check_mode,
    item_generator,
    load_or_build_manifest,
)
from ops.atomic_write import atomic_write_text
from ops.resize import resize_to

IMAGE_DIR = "CelebA-HQ-img"
MASK_DIR = "CelebAMask-HQ-mask-anno"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
IDENTITY_FILE = "identity_CelebA.txt"
PARTITION_FILE = "list_eval_partition.txt"
MASKS_PER_FOLDER = 2000
SPLITS = {"train": 0, "val": 1, "test": 2}
DEFAULT_CACHE = "ideface-prepared"
PAPER_TEST_IMAGES = 2842
PAPER_TEST_PAIRS = 28420

CELEBAMASK_SOURCE = (
    "CelebAMask-HQ: https://github.com/switchablenorms/CelebAMask-HQ "
    "(download links in its README; unzip CelebAMask-HQ.zip into the root)"
)
CELEBA_SOURCE = (
    "CelebA: https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive folder, "
    "Anno/identity_CelebA.txt and Eval/list_eval_partition.txt; put them in the root)"
)
SOURCES = {
    IMAGE_DIR: CELEBAMASK_SOURCE,
    MASK_DIR: CELEBAMASK_SOURCE,
    MAPPING_FILE: CELEBAMASK_SOURCE,
    IDENTITY_FILE: CELEBA_SOURCE,
    PARTITION_FILE: CELEBA_SOURCE,
}
# Where CelebA's own archive puts each of its files, besides the root itself.
_SUBDIRS = {IDENTITY_FILE: ("Anno",), PARTITION_FILE: ("Eval",)}


class MissingDataError(FileNotFoundError):
    """A dataset file or folder is absent; the message says which, where it was looked for, and its source."""


def locate(root: str | os.PathLike, name: str) -> Path:
    """Path of ``name`` (a file or folder of the layout above) under ``root``; MissingDataError if absent."""
    root = Path(root)
    candidates = [root / name] + [root / sub / name for sub in _SUBDIRS.get(name, ())]
    for c in candidates:
        if c.exists():
            return c
    looked = ", ".join(str(c) for c in candidates)
    raise MissingDataError(f"missing {name}: looked for {looked}. It comes from {SOURCES[name]}.")


@dataclass(frozen=True)
class Record:
    """One CelebA-HQ image: its index, CelebA file name, CelebA identity and partition (0/1/2)."""

    idx: int
    orig_file: str
    identity: int
    partition: int

    @property
    def key(self) -> str:
        """The item key used by manifests: the CelebA-HQ index as text."""
        return str(self.idx)


def read_mapping(path: str | os.PathLike) -> dict[int, str]:
    """CelebA-HQ-to-CelebA-mapping.txt -> {CelebA-HQ idx: CelebA orig_file}; checks the header."""
    path = Path(path)
    lines = path.read_text().splitlines()
    if not lines or lines[0].split()[:3] != ["idx", "orig_idx", "orig_file"]:
        raise ValueError(f"{path}: expected the header 'idx orig_idx orig_file' on line 1")
    out: dict[int, str] = {}
    for n, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or not parts[0].isdigit():
            raise ValueError(f"{path}:{n}: expected 'idx orig_idx orig_file', got {line!r}")
        out[int(parts[0])] = parts[2]
    return out


def read_celeba_list(path: str | os.PathLike) -> dict[str, int]:
    """identity_CelebA.txt / list_eval_partition.txt ('<file> <int>' per line) -> {file: int}."""
    path = Path(path)
    out: dict[str, int] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{n}: expected '<file> <integer>', got {line!r}")
        out[parts[0]] = int(parts[1])
    return out


class CelebAHQIndex:
    """The joined annotation files of a CelebA-HQ root: one ``Record`` per image, sorted by idx."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise MissingDataError(
                f"CelebA-HQ root {self.root} is not a folder (data.root / --root). "
                f"It should hold {IMAGE_DIR}/, {MASK_DIR}/, {MAPPING_FILE} from "
                f"{CELEBAMASK_SOURCE}; and {IDENTITY_FILE}, {PARTITION_FILE} from "
                f"{CELEBA_SOURCE}."
            )
        found, missing = {}, []
        for name in (IMAGE_DIR, MAPPING_FILE, IDENTITY_FILE, PARTITION_FILE):
            try:
                found[name] = locate(self.root, name)
            except MissingDataError as err:
                missing.append(str(err))
        if missing:  # every missing item at once, not one per attempt
            raise MissingDataError(
                " ".join(missing)
                if len(missing) == 1
                else f"{len(missing)} items missing from {self.root}: " + " ".join(missing)
            )
        self.image_dir = found[IMAGE_DIR]
        mapping_path, identity_path, partition_path = (found[n] for n in (MAPPING_FILE, IDENTITY_FILE, PARTITION_FILE))
        mapping = read_mapping(mapping_path)
        identities = read_celeba_list(identity_path)
        partitions = read_celeba_list(partition_path)
        for name, table, path in (("identity", identities, identity_path), ("partition", partitions, partition_path)):
            unknown = [(i, f) for i, f in sorted(mapping.items()) if f not in table]
            if unknown:
                raise ValueError(
                    f"{len(unknown)} CelebA-HQ images have no {name} in {path} "
                    f"(first: idx {unknown[0][0]} -> {unknown[0][1]}); is it CelebA's complete "
                    f"{path.name}? It comes from {CELEBA_SOURCE}."
                )
        bad = sorted({p for p in partitions.values() if p not in SPLITS.values()})
        if bad:
            raise ValueError(f"{partition_path}: partitions must be 0, 1 or 2, found {bad}")
        self.records = [Record(i, f, identities[f], partitions[f]) for i, f in sorted(mapping.items())]

    def split(self, name: str) -> list[Record]:
        """Records of split ``name`` (train | val | test), sorted by idx."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return [r for r in self.records if r.partition == SPLITS[name]]

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {"images": n, "identities": n}} for train, val, test."""
        out = {}
        for name in SPLITS:
            recs = self.split(name)
            out[name] = {"images": len(recs), "identities": len({r.identity for r in recs})}
        return out

    def image_path(self, idx: int) -> Path:
        return self.image_dir / f"{idx}.jpg"

    def mask_path(self, idx: int, cls: str) -> Path:
        return self.root / MASK_DIR / str(idx // MASKS_PER_FOLDER) / f"{idx:05d}_{cls}.png"

    def mask_files(self, idx: int) -> dict[str, Path]:
        """The part-mask files that exist for image ``idx`` (classes without a part have none)."""
        paths = {cls: self.mask_path(idx, cls) for cls in CELEBAMASK_CLASSES[1:]}
        return {cls: p for cls, p in paths.items() if p.is_file()}


def load_photo(index: CelebAHQIndex, idx: int) -> torch.Tensor:
    """The CelebA-HQ face ``idx`` at its stored size: (3, H, W) in [-1, 1], H == W."""
    path = index.image_path(idx)
    if not path.is_file():
        raise MissingDataError(f"missing image {path} (CelebA-HQ index {idx}). It comes from {CELEBAMASK_SOURCE}.")
    photo = load_image(path)
    if photo.shape[1] != photo.shape[2]:
        raise BadImageError(path, f"expected a square aligned face, got {photo.shape[2]}x{photo.shape[1]}")
    return photo


def build_label_map(index: CelebAHQIndex, idx: int, size: int) -> torch.Tensor:
    """Merge image ``idx``'s part masks into a (size, size) int64 label map (see ``merge_mask``)."""
    parts = index.mask_files(idx)
    if not parts:
        raise MissingDataError(
            f"no part masks for CelebA-HQ image {idx}: expected files such as "
            f"{index.mask_path(idx, 'skin')}. They come from {CELEBAMASK_SOURCE}."
        )
    return merge_mask(parts, size=size)


def build_sketch(photo: torch.Tensor, size: int) -> torch.Tensor:
    """The XDoG stand-in sketch of a photo (3, H, W) in [-1, 1] at (1, size, size) in [-1, 1]."""
    return xdog_sketch(resize_to(photo[None], size).clamp(-1.0, 1.0))[0]


@dataclass(frozen=True)
class BadFile:
    """A file ``data.prepare`` could not use: image idx, kind (image | mask), path, reason."""

    idx: int
    kind: str
    path: str
    reason: str


class PreparedCache:
    """File layout of the ``data.prepare`` output folder (shared by prepare and the dataset)."""

    BAD_HEADER = "idx\tkind\tpath\treason"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def labels(self, size: int, idx: int) -> Path:
        return self.root / f"labels_{size}" / f"{idx}.png"

    def sketch(self, size: int, idx: int) -> Path:
        return self.root / f"sketch_{size}" / f"{idx}.png"

    def manifest(self, split: str, mode: str, n_per_contour: int, seed: int) -> Path:
        return self.root / "manifests" / f"{split}_{mode}_n{n_per_contour}_seed{seed}.csv"

    @property
    def bad_files_path(self) -> Path:
        return self.root / "bad_files.tsv"

    def write_bad_files(self, bad: list[BadFile]) -> Path:
        """Write the bad-file list (header only when there are none), atomically."""
        # Reasons may carry tabs/newlines from decoder messages; one line per file keeps it a TSV.
        lines = [self.BAD_HEADER] + [f"{b.idx}\t{b.kind}\t{b.path}\t{' '.join(b.reason.split())}" for b in bad]
        atomic_write_text(self.bad_files_path, "\n".join(lines) + "\n")
        return self.bad_files_path

    def read_bad_files(self) -> list[BadFile]:
        """The bad files listed by the last ``data.prepare`` run ([] when it has not run)."""
        if not self.bad_files_path.is_file():
            return []
        lines = self.bad_files_path.read_text().splitlines()
        if not lines or lines[0] != self.BAD_HEADER:
            raise ValueError(f"{self.bad_files_path}: not a bad-file list written by data.prepare")
        out = []
        for n, line in enumerate(lines[1:], start=2):
            parts = line.split("\t")
            if len(parts) != 4 or not parts[0].isdigit():
                raise ValueError(f"{self.bad_files_path}:{n}: malformed line {line!r}")
            out.append(BadFile(int(parts[0]), parts[1], parts[2], parts[3]))
        return out


def default_cache_dir(root: str | os.PathLike) -> Path:
    return Path(root) / DEFAULT_CACHE


def count_report(index: CelebAHQIndex, manifest: TestManifest | None = None) -> str:
    """Split sizes from the files next to the paper's figures (and the test pairs, if given)."""
    c = index.counts()
    lines = [f"CelebA-HQ images in the mapping: {len(index.records):,} (paper: 30,000)"]
    lines += [f"  {name:5s}: {v['images']:,} images, {v['identities']:,} identities" for name, v in c.items()]
    lines.append(f"  test images: {c['test']['images']:,} (paper: {PAPER_TEST_IMAGES:,})")
    if manifest is not None:
        lines.append(
            f"  test pairs ({manifest.mode}, {manifest.n_per_contour} per contour): "
            f"{len(manifest.rows):,} from {manifest.n_contours:,} contours, "
            f"{len(manifest.excluded):,} contours excluded (no other photo of the person) "
            f"(paper: {PAPER_TEST_PAIRS:,} pairs)"
        )
    return "\n".join(lines)


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
            raise MissingDataError("no CelebA-HQ root given (data.root=<folder>); see data/celebahq.py")
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
