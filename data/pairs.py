"""Identity pairing: which identity image goes with each contour, in training and in the test set.

The paper says only "for each contour condition we randomly sample 10 identity images" and that
training is "fully unsupervised"; it never says whether the identity image shows the same person.
Three readings, chosen by ``data.pairing`` and recorded with every result:

- ``same_identity`` (default): the identity image is ANOTHER photo of the contour's person.
  Training draws a fresh one per epoch (``item_generator``); when the person has no other photo in
  the split, a mirrored copy of the same photo is used instead (counted: ``TrainPairSampler.
  n_fallback_items``). Test: exactly ``n_per_contour`` identity images per contour, drawn once with
  a fixed seed, without replacement when the person has enough other photos and otherwise
  balanced with replacement (every other photo used before any is repeated); contours whose
  person has no other photo are excluded from the test set and counted.
- ``self``: the identity image is the target photo itself, mirrored/shifted/re-lit in training
  (the label-free reading of "fully unsupervised"). Test: one row per contour, unaugmented.
- ``random``: identity images of OTHER people (the identity-swap reading; the paper's figures).

Everything here is world-agnostic: it works on a list of ``(item key, identity id)`` so CelebA-HQ
and the toy world share the pairing code and the manifest format. The test manifest is a CSV with
columns ``MANIFEST_COLUMNS`` written once, so every method is evaluated on the same pairs; its
sha256 (``manifest_hash``) is logged with every result.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ops.atomic_write import atomic_write_bytes

PAIRING_MODES = ("same_identity", "self", "random")
MANIFEST_COLUMNS = ("pair", "contour", "contour_identity_id", "identity", "identity_id", "same_identity")


def check_mode(mode: str) -> str:
    if mode not in PAIRING_MODES:
        raise ValueError(f"unknown pairing {mode!r}; choose one of {', '.join(PAIRING_MODES)}")
    return mode


def _normalise_items(items: Iterable[tuple[object, int]]) -> list[tuple[str, int]]:
    out = [(str(key), int(ident)) for key, ident in items]
    keys = [k for k, _ in out]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})[:5]
        raise ValueError(f"item keys must be unique; repeated: {dup}")
    return out


@dataclass(frozen=True)
class PairRow:
    """One test pair: the contour's item key and person, the identity image's key and person."""

    pair: int
    contour: str
    contour_identity_id: int
    identity: str
    identity_id: int
    same_identity: bool


def manifest_csv(rows: Sequence[PairRow]) -> str:
    """The manifest's exact file content (header + one line per row, '\\n' line ends)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for r in rows:
        writer.writerow([r.pair, r.contour, r.contour_identity_id, r.identity, r.identity_id, int(r.same_identity)])
    return buf.getvalue()


@dataclass(frozen=True)
class TestManifest:
    """Test pairs plus what was left out: ``excluded`` are contour keys with no valid identity image."""

    __test__ = False  # not a pytest test class, despite the name

    rows: tuple[PairRow, ...]
    excluded: tuple[str, ...]
    mode: str
    n_per_contour: int
    seed: int
    path: Path | None = None

    @property
    def n_contours(self) -> int:
        return len({r.contour for r in self.rows})

    @property
    def hash(self) -> str:
        """sha256 of the CSV content; equals ``manifest_hash`` of the written file."""
        return hashlib.sha256(manifest_csv(self.rows).encode()).hexdigest()


class ManifestError(ValueError):
    """A test manifest file that is malformed or no longer the one its data builds; the message names it."""


def _contour_rng(seed: int, key: str) -> np.random.Generator:
    # Seeded per contour from a stable digest (not Python's salted hash()), so each contour's draw
    # is the same in every run and does not depend on which other items are present.
    return np.random.default_rng([seed, int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")])


def _draw(rng: np.random.Generator, pool: np.ndarray, n: int) -> list[int]:
    """n picks from pool: distinct when the pool is big enough, else whole shuffles then a partial one."""
    if len(pool) >= n:
        return [int(p) for p in pool[rng.choice(len(pool), n, replace=False)]]
    picks: list[int] = []
    while len(picks) < n:
        picks.extend(int(p) for p in pool[rng.permutation(len(pool))])
    return picks[:n]


def build_test_manifest(
    items: Iterable[tuple[object, int]], n_per_contour: int = 10, mode: str = "same_identity", seed: int = 0
) -> TestManifest:
    """The fixed test pairs for ``items`` = [(key, identity id), ...] in the given order.

    same_identity / random: ``n_per_contour`` rows per contour (see the module docstring);
    self: one row per contour. Rows follow the items' order; each contour's identity images depend
    only on its key, the set of items, ``mode`` and ``seed`` (not on the list order or the run).
    """
    check_mode(mode)
    if n_per_contour < 1:
        raise ValueError(f"n_per_contour must be >= 1, got {n_per_contour}")
    items = _normalise_items(items)
    ids = np.array([ident for _, ident in items], dtype=np.int64)
    # Pools are listed in key order, so a contour's draw does not depend on the items' order.
    positions = np.array(sorted(range(len(items)), key=lambda p: items[p][0]), dtype=np.int64)
    ids_by_key = ids[positions]
    rows: list[PairRow] = []
    excluded: list[str] = []
    for pos, (key, ident) in enumerate(items):
        if mode == "self":
            picks = [pos]
        else:
            same = ids_by_key == ident
            pool = positions[same & (positions != pos)] if mode == "same_identity" else positions[~same]
            if not len(pool):
                excluded.append(key)
                continue
            picks = _draw(_contour_rng(seed, key), pool, n_per_contour)
        for p in picks:
            other_key, other_id = items[p]
            rows.append(PairRow(len(rows), key, ident, other_key, other_id, other_id == ident))
    return TestManifest(tuple(rows), tuple(excluded), mode, n_per_contour, seed)


def write_manifest(manifest: TestManifest | Sequence[PairRow], path: str | os.PathLike) -> str:
    """Write the manifest CSV atomically; returns its sha256."""
    rows = manifest.rows if isinstance(manifest, TestManifest) else manifest
    text = manifest_csv(rows)
    atomic_write_bytes(path, text.encode())
    return hashlib.sha256(text.encode()).hexdigest()


def read_manifest(path: str | os.PathLike) -> list[PairRow]:
    """Read a manifest CSV written by ``write_manifest``; a malformed, empty or binary file raises
    :class:`ManifestError` naming the file (and the line)."""
    path = Path(path)
    advice = "delete it to rebuild it from the data"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ManifestError(
                    f"{path}: not a pair manifest, missing columns {missing} "
                    f"(expected {', '.join(MANIFEST_COLUMNS)}); {advice}"
                )
            rows = []
            for line, rec in enumerate(reader, start=2):
                try:
                    rows.append(
                        PairRow(
                            int(rec["pair"]),
                            rec["contour"],
                            int(rec["contour_identity_id"]),
                            rec["identity"],
                            int(rec["identity_id"]),
                            {"1": True, "0": False}[rec["same_identity"]],
                        )
                    )
                except (KeyError, TypeError, ValueError) as e:
                    raise ManifestError(f"{path}:{line}: malformed manifest row {rec} ({e!r}); {advice}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ManifestError(f"{path}: not a text CSV manifest ({type(e).__name__}); {advice}") from None
    if not rows:
        raise ManifestError(f"{path}: a manifest with no pairs (header only); {advice}")
    return rows


def manifest_hash(path: str | os.PathLike) -> str:
    """sha256 (hex) of a manifest file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_or_build_manifest(
    path: str | os.PathLike | None,
    items: Iterable[tuple[object, int]],
    n_per_contour: int = 10,
    mode: str = "same_identity",
    seed: int = 0,
) -> TestManifest:
    """The manifest at ``path`` if it exists (written once, then only read), else build and write it.

    An existing file must hold exactly the pairs a fresh build gives (same rows, so the same sha256): a file
    edited by hand, or written for other data (images added or removed since), raises
    :class:`ManifestError` naming it; deleting it asks for a rebuild. If ``path`` is None or not writable
    the pairs stay in memory (same rows, same hash) and ``.path`` is None.
    """
    fresh = build_test_manifest(items, n_per_contour, mode, seed)
    if path is None:
        return fresh
    path = Path(path)
    if path.exists():
        rows = tuple(read_manifest(path))
        if rows != fresh.rows or manifest_hash(path) != fresh.hash:
            changed = [r.pair for r, f in zip(rows, fresh.rows) if r != f]
            what = (
                f"{len(rows)} rows where the data gives {len(fresh.rows)}"
                if len(rows) != len(fresh.rows)
                else f"{len(changed)} rows differ (first: pair {changed[0]})"
                if changed
                else "its bytes differ from the canonical CSV"
            )
            raise ManifestError(
                f"test manifest {path} is not the one the current data builds ({what}): it was edited, or the "
                "data changed since it was written; delete it to rebuild it (results of the old pairs are then "
                "recomputed, as their manifest sha256 no longer matches)"
            )
        return TestManifest(rows, fresh.excluded, mode, n_per_contour, seed, path)
    try:
        write_manifest(fresh, path)
    except OSError as e:
        warnings.warn(f"could not write the test manifest to {path} ({e}); keeping it in memory", stacklevel=2)
        return fresh
    return TestManifest(fresh.rows, fresh.excluded, mode, n_per_contour, seed, path)


@dataclass(frozen=True)
class IdentityDraw:
    """A training identity image: item position ``index``, and how to transform it (``apply_draw``)."""

    index: int
    same_identity: bool
    flip: bool = False  # mirrored copy: the fallback when the person has no other photo
    augment: bool = False  # flip + jitter: the `self` reading


class TrainPairSampler:
    """Draws a training identity image for item ``i`` of ``items`` = [(key, identity id), ...].

    Draws use ``generator``; datasets pass ``item_generator(seed, epoch, i)`` so the pairs a run
    sees do not depend on worker count, prefetching or where it resumed (skipped batches are never
    read). ``n_fallback_items`` items (same_identity mode, person with a single photo in the split)
    always get the mirrored-copy fallback; ``fallback_draws`` counts fallbacks drawn in this
    process (DataLoader workers keep their own counts).
    """

    def __init__(self, items: Iterable[tuple[object, int]], mode: str = "same_identity"):
        self.mode = check_mode(mode)
        self.items = _normalise_items(items)
        if not self.items:
            raise ValueError("TrainPairSampler needs at least one item")
        self.groups: dict[int, list[int]] = {}
        for pos, (_, ident) in enumerate(self.items):
            self.groups.setdefault(ident, []).append(pos)
        self._rank = {p: r for group in self.groups.values() for r, p in enumerate(group)}
        if mode == "random" and len(self.groups) < 2:
            raise ValueError("pairing 'random' needs at least two identities in the split")
        self.n_fallback_items = (
            sum(len(g) for g in self.groups.values() if len(g) == 1) if mode == "same_identity" else 0
        )
        self.fallback_draws = 0

    def __len__(self) -> int:
        return len(self.items)

    def draw(self, i: int, generator: torch.Generator | None = None) -> IdentityDraw:
        ident = self.items[i][1]
        if self.mode == "self":
            return IdentityDraw(i, True, augment=True)
        if self.mode == "random":
            while True:
                j = int(torch.randint(len(self.items), (1,), generator=generator))
                if self.items[j][1] != ident:
                    return IdentityDraw(j, False)
        group = self.groups[ident]
        if len(group) == 1:
            self.fallback_draws += 1
            return IdentityDraw(i, True, flip=True)
        r = int(torch.randint(len(group) - 1, (1,), generator=generator))
        return IdentityDraw(group[r + (r >= self._rank[i])], True)

    def stats(self) -> dict:
        """Numbers to log with a run: pairing mode, fallback items and fraction, fallbacks drawn."""
        return {
            "pairing": self.mode,
            "fallback_items": self.n_fallback_items,
            "fallback_fraction": self.n_fallback_items / len(self.items),
            "fallback_draws": self.fallback_draws,
        }


def augment_identity(
    img: torch.Tensor, generator: torch.Generator | None = None, max_shift: float = 0.04, max_gain: float = 0.1
) -> torch.Tensor:
    """Random mirror, shift and re-light: (3, H, W) in [-1, 1] -> (3, H, W) in [-1, 1].

    Mirror with p = 0.5; integer shift up to ``max_shift`` x size (reflect-filled); contrast and
    brightness changed by up to +-``max_gain``. Enough to stop the `self` pairing from being a copy.
    """
    r = torch.rand(3, generator=generator)
    x = img.flip(-1) if r[0] < 0.5 else img
    h, w = x.shape[-2:]
    m = int(round(max_shift * min(h, w)))
    if m > 0:
        dy, dx = (int(v) for v in torch.randint(-m, m + 1, (2,), generator=generator))
        x = F.pad(x[None], (m, m, m, m), mode="reflect")[0, :, m + dy : m + dy + h, m + dx : m + dx + w]
    contrast = 1.0 + max_gain * (2.0 * float(r[1]) - 1.0)
    brightness = max_gain * (2.0 * float(r[2]) - 1.0)
    return (x * contrast + brightness).clamp(-1.0, 1.0)


def apply_draw(img: torch.Tensor, draw: IdentityDraw, generator: torch.Generator | None = None) -> torch.Tensor:
    """The identity image for ``draw``: (3, H, W) in [-1, 1] mirrored / augmented as it says."""
    if draw.augment:
        return augment_identity(img, generator)
    return img.flip(-1) if draw.flip else img


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator for the random draws of training item ``index`` in ``epoch``: the pairs a run
    sees depend on (seed, epoch, index) only, not on process count, prefetching or resume points."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_000_007 + index)
