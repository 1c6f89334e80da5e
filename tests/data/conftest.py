"""A miniature CelebA-HQ tree in the exact CelebAMask-HQ + CelebA layout and file formats.

40 synthetic 64x64 JPEG faces (the real ones are 1024; nothing may assume that), 32x32 part masks
(half the photo size, as the real 512 masks are), the mapping file with its header, and CelebA's
identity and partition files including CelebA-only lines. HQ indices 0..19 and 2000..2019 so the
mask folders 0/ and 1/ both occur. Each identity has its own background colour, so a test can tell
whose photo an identity image is.

Splits (identity-disjoint, as CelebA's partition):
  train: 2880 x6, 1001 x5, 4242 x1 (single photo -> fallback), 777 x8   = 20 images
  val:   3131 x3, 55 x1                                                 =  4 images
  test:  9000 x12 (>= 10 others), 8100 x3 (replacement), 6006 x1 (excluded) = 16 images
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

IDENTITIES = {  # identity -> (partition, photos, background colour)
    2880: (0, 6, (200, 40, 40)),
    1001: (0, 5, (40, 200, 40)),
    4242: (0, 1, (40, 40, 200)),
    777: (0, 8, (200, 200, 40)),
    3131: (1, 3, (200, 40, 200)),
    55: (1, 1, (40, 200, 200)),
    9000: (2, 12, (230, 130, 30)),
    8100: (2, 3, (30, 130, 230)),
    6006: (2, 1, (130, 30, 230)),
}
MASK_CLASSES = ("skin", "nose", "l_eye", "r_eye", "hair", "hat")
SIZE, MASK_SIZE = 64, 32


@dataclass
class MiniCelebA:
    root: Path
    records: list[tuple[int, str, int, int]]  # (hq idx, celeba file, identity, partition)

    def colour(self, identity: int) -> tuple[int, int, int]:
        return IDENTITIES[identity][2]

    def identity_of(self, idx: int) -> int:
        return next(r[2] for r in self.records if r[0] == idx)

    def split(self, partition: int) -> list[tuple[int, str, int, int]]:
        return [r for r in self.records if r[3] == partition]


def _parts(rng: np.random.Generator, n: int, with_hat: bool) -> tuple[dict[str, np.ndarray], tuple[int, int]]:
    """Part masks (n x n bool) of a face whose centre is jittered per photo."""
    yy, xx = np.mgrid[0:n, 0:n] / n
    cy, cx = 0.55 + rng.uniform(-0.05, 0.05), 0.5 + rng.uniform(-0.05, 0.05)
    skin = ((yy - cy) / 0.32) ** 2 + ((xx - cx) / 0.25) ** 2 < 1
    parts = {
        "skin": skin,
        "nose": (abs(xx - cx) < 0.04) & (yy > cy - 0.05) & (yy < cy + 0.08),
        "l_eye": ((yy - (cy - 0.1)) ** 2 + (xx - (cx - 0.1)) ** 2) < 0.04**2,
        "r_eye": ((yy - (cy - 0.1)) ** 2 + (xx - (cx + 0.1)) ** 2) < 0.04**2,
        "hair": (yy < cy - 0.2) & (abs(xx - cx) < 0.3),
    }
    if with_hat:
        parts["hat"] = (yy < cy - 0.28) & (abs(xx - cx) < 0.2)  # overlaps the hair: hat must win
    return parts, (cy, cx)


def _photo(parts: dict[str, np.ndarray], colour, n: int) -> np.ndarray:
    """A 64x64 RGB face painted from the parts (upsampled), on the identity's background colour."""
    img = np.empty((n, n, 3), np.float32)
    img[:] = colour
    scale = n // next(iter(parts.values())).shape[0]
    up = {k: np.kron(v, np.ones((scale, scale), bool)) for k, v in parts.items()}
    img[up["hair"]] = (60, 40, 20)
    img[up["skin"]] = (235, 200, 170)
    img[up["nose"]] = (210, 160, 130)
    img[up["l_eye"] | up["r_eye"]] = (20, 20, 20)
    if "hat" in up:
        img[up["hat"]] = (20, 90, 40)
    return img.astype(np.uint8)


def build_mini_celebahq(root: Path, seed: int = 0) -> MiniCelebA:
    rng = np.random.default_rng(seed)
    hq = list(range(0, 20)) + list(range(2000, 2020))
    rng.shuffle(hq)
    orig = rng.choice(202_599, size=50, replace=False)
    records = []
    k = 0
    for identity, (partition, n, _) in IDENTITIES.items():
        for _ in range(n):
            records.append((int(hq[k]), f"{orig[k] + 1:06d}.jpg", identity, partition))
            k += 1
    records.sort()
    (root / "CelebA-HQ-img").mkdir(parents=True)
    mapping = ["idx\torig_idx\torig_file"]
    for idx, orig_file, identity, _ in records:
        parts, _ = _parts(rng, MASK_SIZE, with_hat=idx % 3 == 0)
        Image.fromarray(_photo(parts, IDENTITIES[identity][2], SIZE)).save(
            root / "CelebA-HQ-img" / f"{idx}.jpg", quality=95
        )
        mask_dir = root / "CelebAMask-HQ-mask-anno" / str(idx // 2000)
        mask_dir.mkdir(parents=True, exist_ok=True)
        for cls, m in parts.items():
            im = Image.fromarray(m.astype(np.uint8) * 255)
            # some masks stored 3-channel, as tools that re-save them often do
            (im.convert("RGB") if idx % 2 else im).save(mask_dir / f"{idx:05d}_{cls}.png")
        mapping.append(f"{idx}      {int(orig_file[:6]) - 1}      {orig_file}")
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(mapping) + "\n")
    # CelebA lists every CelebA image, most of which are not in CelebA-HQ.
    celeba = {r[1]: (r[2], r[3]) for r in records}
    for j in orig[len(records) :]:
        celeba[f"{j + 1:06d}.jpg"] = (int(rng.integers(10_000, 10_177)), int(rng.integers(0, 3)))
    names = sorted(celeba)
    (root / "identity_CelebA.txt").write_text("".join(f"{f} {celeba[f][0]}\n" for f in names))
    (root / "list_eval_partition.txt").write_text("".join(f"{f} {celeba[f][1]}\n" for f in names))
    return MiniCelebA(root, records)


@pytest.fixture(scope="session")
def mini_celebahq(tmp_path_factory) -> MiniCelebA:
    """The clean miniature tree (read-only by convention: copy it before damaging anything)."""
    return build_mini_celebahq(tmp_path_factory.mktemp("celebahq") / "CelebAMask-HQ")


@dataclass
class DamagedTree:
    tree: MiniCelebA
    bad: dict[str, int]  # case -> hq idx that must be reported
    converted: dict[str, int]  # case -> hq idx stored in an odd but valid format


def _exif_rotated_jpeg(src: Path, dst: Path) -> None:
    """Store the pixels rotated 90 degrees with EXIF orientation 6, which undoes it when applied."""
    im = Image.open(src).convert("RGB")
    stored = im.transpose(Image.Transpose.ROTATE_90)  # orientation 6 = rotate 270 (90 clockwise) to display
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(dst, quality=95, exif=exif.tobytes())


@pytest.fixture(scope="session")
def damaged_celebahq(mini_celebahq, tmp_path_factory) -> DamagedTree:
    """A copy of the tree with each bad-file case and each odd-but-valid format, one image each."""
    root = tmp_path_factory.mktemp("damaged") / "CelebAMask-HQ"
    shutil.copytree(mini_celebahq.root, root)
    tree = MiniCelebA(root, mini_celebahq.records)
    train = [r[0] for r in tree.split(0) if r[2] != 4242]
    test_9000 = [r[0] for r in tree.split(2) if r[2] == 9000]
    img = lambda idx: root / "CelebA-HQ-img" / f"{idx}.jpg"
    bad = {
        "corrupt": test_9000[0],
        "truncated": train[0],
        "empty": train[1],
        "missing_image": train[2],
        "missing_masks": train[3],
        "not_square": train[4],
    }
    img(bad["corrupt"]).write_bytes(np.random.default_rng(1).bytes(2000))
    data = img(bad["truncated"]).read_bytes()
    img(bad["truncated"]).write_bytes(data[: len(data) // 2])
    img(bad["empty"]).write_bytes(b"")
    img(bad["missing_image"]).unlink()
    for p in (root / "CelebAMask-HQ-mask-anno" / str(bad["missing_masks"] // 2000)).glob(
        f"{bad['missing_masks']:05d}_*.png"
    ):
        p.unlink()
    Image.open(img(bad["not_square"])).crop((0, 0, 64, 48)).save(img(bad["not_square"]))

    converted = {
        "grayscale": train[5],
        "rgba": train[6],
        "cmyk": train[7],
        "16bit": train[8],
        "exif": train[9],
        "small": train[10],
    }
    Image.open(img(converted["grayscale"])).convert("L").save(img(converted["grayscale"]), format="JPEG")
    rgba = Image.open(img(converted["rgba"])).convert("RGBA")
    rgba.putalpha(255)
    rgba.save(img(converted["rgba"]), format="PNG")  # a PNG named .jpg: decoded by content
    Image.open(img(converted["cmyk"])).convert("CMYK").save(img(converted["cmyk"]), format="JPEG", quality=95)
    gray16 = np.asarray(Image.open(img(converted["16bit"])).convert("L"), np.uint16) * 257
    Image.fromarray(gray16).save(img(converted["16bit"]), format="PNG")
    _exif_rotated_jpeg(img(converted["exif"]), img(converted["exif"]))
    small = Image.open(img(converted["small"])).resize((32, 32), Image.BICUBIC)
    small.save(img(converted["small"]), quality=95)
    return DamagedTree(tree, bad, converted)
