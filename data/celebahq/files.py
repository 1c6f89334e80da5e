"""CelebA-HQ's files in the CelebAMask-HQ layout: where they are, the index joining CelebA's identities and
identity-disjoint splits, the per-image photo, label map and sketch, and ``ideface-prepare``'s cache.

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
list of bad files (:class:`PreparedCache`); the dataset (``data.celebahq.dataset``) reads them when
present and computes the same thing otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from data.conditions import CELEBAMASK_CLASSES, merge_mask, xdog_sketch
from data.images import BadImageError, load_image
from data.pairs import TestManifest
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
