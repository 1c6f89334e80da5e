"""One-time dataset preparation: ``ideface-prepare celebahq --root <folder> [--out <folder>]``.

For CelebA-HQ (layout in ``data/celebahq/files.py``) it

1. validates the folder: every annotation file present and consistent (a missing one is named
   with where it comes from);
2. builds, for every image, the merged label map and the XDoG sketch at ``--size`` (256) into the
   output folder (default ``<root>/ideface-prepared``; pass the same folder as ``data.cache_dir``).
   Writes are atomic and finished files are skipped, so an interrupted run resumes where it
   stopped and a second run does no work; ``--workers N`` spreads the work over processes;
3. lists every file it could not use (missing, empty, corrupt or truncated image; image without
   any part mask) in ``bad_files.tsv``; the dataset leaves exactly those images out, with a
   warning, and never drops anything else;
4. writes the val and test manifests (every pairing mode, ``--n-per-contour`` identity images per
   contour, ``--seed``) once; an existing manifest is kept unless the data changed;
5. prints the split sizes next to the paper's (2,842 test images, 28,420 pairs).

``ideface-prepare align --src <photos> --out <folder> [--size 1024]`` aligns a folder of raw
photos like FFHQ/CelebA-HQ (``data.align``; ``--detector auto`` takes dlib's 68 landmarks when the
align extra is installed). Sub-folders are kept (one per person is the layout ``--identity-dir`` and
the identity tools read): ``<src>/<dir>/<name>.<ext>`` becomes ``<out>/<dir>/<name>.png`` at
``--size``, with the aligner, face box, the five points and the crop matrix in the PNG's text chunks
and in ``<out>/alignment.tsv``. Finished files are skipped (resumable; ``--workers N`` processes),
and every photo it could not use (unreadable, no face, face too small) is listed in
``<out>/bad_files.tsv`` and retried on the next run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data.celebahq.files import (
    MASK_DIR,
    BadFile,
    CelebAHQIndex,
    MissingDataError,
    PreparedCache,
    build_label_map,
    build_sketch,
    count_report,
    default_cache_dir,
    load_photo,
    locate,
)
from data.images import BadImageError, open_image, save_image, save_label_map
from data.pairs import PAIRING_MODES, ManifestError, build_test_manifest, read_manifest, write_manifest
from ops.atomic_write import atomic_write_text

MANIFEST_SPLITS = ("val", "test")


@dataclass
class PrepareReport:
    """What a prepare run did: files built and skipped, bad files, manifests and their status."""

    out: Path
    built_labels: int = 0
    built_sketches: int = 0
    skipped: int = 0
    bad: list[BadFile] = field(default_factory=list)
    # "<split>/<mode>" -> (path, sha256, status)
    manifests: dict[str, tuple[Path, str, str]] = field(default_factory=dict)
    counts: str = ""
    warnings: list[str] = field(default_factory=list)  # what a user must act on (e.g. a split left empty)

    def text(self) -> str:
        lines = [
            self.counts,
            f"prepared files in {self.out}: built {self.built_labels} label maps and "
            f"{self.built_sketches} sketches; {self.skipped} images already done",
        ]
        if self.bad:
            lines.append(f"{len(self.bad)} bad files (left out of every split; listed in bad_files.tsv):")
            lines += [f"  [{b.kind}] {b.path}: {b.reason}" for b in self.bad]
        else:
            lines.append("no bad files")
        lines += [
            f"manifest {name}: {path} sha256={digest[:16]} ({status})"
            for name, (path, digest, status) in self.manifests.items()
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def prepare_item(index: CelebAHQIndex, cache: PreparedCache, size: int, idx: int) -> tuple[int, int, list[BadFile]]:
    """Build what is missing for image ``idx``: (label maps built, sketches built, bad files found)."""
    built_labels = built_sketch = 0
    bad: list[BadFile] = []
    labels_path = cache.labels(size, idx)
    if not labels_path.is_file():
        try:
            save_label_map(build_label_map(index, idx, size), labels_path)
            built_labels = 1
        except MissingDataError:
            bad.append(
                BadFile(
                    idx,
                    "mask",
                    str(index.mask_path(idx, "skin").parent),
                    f"no part masks {idx:05d}_<class>.png for this image",
                )
            )
        except BadImageError as e:
            bad.append(BadFile(idx, "mask", str(e.path), e.reason))
    sketch_path = cache.sketch(size, idx)
    if not sketch_path.is_file():
        try:
            save_image(build_sketch(load_photo(index, idx), size), sketch_path)
            built_sketch = 1
        except MissingDataError:
            bad.append(BadFile(idx, "image", str(index.image_path(idx)), "missing file"))
        except BadImageError as e:
            bad.append(BadFile(idx, "image", str(e.path), e.reason))
    return built_labels, built_sketch, bad


_WORKER: dict = {}


def _init_worker(root: str, out: str, size: int) -> None:
    torch.set_num_threads(1)  # N processes x all-core torch threads would oversubscribe the CPU
    _WORKER["args"] = (CelebAHQIndex(root), PreparedCache(out), size)


def _work(idx: int) -> tuple[int, int, list[BadFile]]:
    return prepare_item(*_WORKER["args"], idx)


def prepare_celebahq(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    size: int = 256,
    n_per_contour: int = 10,
    seed: int = 0,
    modes: Sequence[str] = PAIRING_MODES,
    workers: int = 0,
    progress: bool = True,
) -> PrepareReport:
    """Validate ``root``, build label maps and sketches at ``size`` into ``out``, write manifests."""
    missing = []
    for check in (lambda: locate(root, MASK_DIR), lambda: CelebAHQIndex(root)):
        try:
            found = check()
        except MissingDataError as err:  # name every missing item in one error, not the first only
            missing.append(str(err))
    if missing:
        raise MissingDataError(" ".join(missing))
    index = found
    out = Path(out) if out is not None else default_cache_dir(root)
    cache = PreparedCache(out)
    report = PrepareReport(out=out)
    todo = [
        r.idx
        for r in index.records
        if not (cache.labels(size, r.idx).is_file() and cache.sketch(size, r.idx).is_file())
    ]
    report.skipped = len(index.records) - len(todo)
    bar = tqdm(total=len(todo), desc="prepare celebahq", disable=not progress or not todo, dynamic_ncols=True)
    if workers > 0 and todo:
        init = (str(root), str(out), size)
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=init) as pool:
            results = pool.map(_work, todo, chunksize=64)
            for result in results:
                _tally(report, result)
                bar.update(1)
    else:
        for idx in todo:
            _tally(report, prepare_item(index, cache, size, idx))
            bar.update(1)
    bar.close()
    # Items that failed in an earlier run have no outputs, so they were retried above: this list is complete.
    report.bad.sort(key=lambda b: (b.idx, b.kind))
    cache.write_bad_files(report.bad)

    bad_idx = {b.idx for b in report.bad}
    test_manifest = None
    for split in MANIFEST_SPLITS:
        records = index.split(split)
        items = [(r.key, r.identity) for r in records if r.idx not in bad_idx]
        if records and not items:
            report.warnings.append(
                f"every one of the {len(records)} {split} images is bad (see bad_files.tsv): "
                f"no {split} manifest written; replace those files and run prepare again"
            )
            continue
        for mode in modes:
            manifest = build_test_manifest(items, n_per_contour, mode, seed)
            path = cache.manifest(split, mode, n_per_contour, seed)
            if path.is_file() and _manifest_rows(path) == manifest.rows:
                status = "unchanged"
            else:
                status = "rewritten: the data changed since it was written" if path.is_file() else "written"
                write_manifest(manifest, path)
            report.manifests[f"{split}/{mode}"] = (path, manifest.hash, status)
            if split == "test" and mode == "same_identity":
                test_manifest = manifest
    report.counts = count_report(index, test_manifest)
    return report


def _manifest_rows(path: Path) -> tuple | None:
    """The rows of an existing manifest, or None when it is malformed (prepare then rewrites it)."""
    try:
        return tuple(read_manifest(path))
    except ManifestError:
        return None


def _tally(report: PrepareReport, result: tuple[int, int, list[BadFile]]) -> None:
    report.built_labels += result[0]
    report.built_sketches += result[1]
    report.bad.extend(result[2])


PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
ALIGN_HEADER = "file\taligner\tn_faces\tbox\tpoints\tmatrix"
ALIGN_BAD_HEADER = "file\tkind\treason"


@dataclass
class AlignReport:
    """What an ``align`` run did: photos aligned now, already done, and the unusable ones (path, kind, reason)."""

    out: Path
    aligned: int = 0
    skipped: int = 0
    aligners: dict[str, int] = field(default_factory=dict)
    bad: list[tuple[str, str, str]] = field(default_factory=list)

    def text(self) -> str:
        used = ", ".join(f"{m}: {n}" for m, n in sorted(self.aligners.items())) or "none"
        lines = [
            f"aligned faces in {self.out}: {self.aligned} aligned now, {self.skipped} already done "
            f"(aligners: {used}); records in alignment.tsv"
        ]
        if self.bad:
            lines.append(f"{len(self.bad)} photos not usable (listed in bad_files.tsv; retried next run):")
            lines += [f"  [{kind}] {path}: {reason}" for path, kind, reason in self.bad]
        else:
            lines.append("no bad files")
        return "\n".join(lines)


def _fmt(values) -> str:
    return ",".join(f"{float(v):.3f}" for v in np.asarray(values).ravel())


def align_photo(src: Path, dst: Path, size: int, detector: str, weights_root=None) -> tuple[str, dict | str]:
    """Align one photo into ``dst`` (PNG with its record as text chunks): ("ok", record) or (kind, reason)."""
    from data.align import FaceNotFoundError, align_face

    try:
        r = align_face(src, size=size, detector=detector, weights_root=weights_root)
    except BadImageError as e:
        return "unreadable", e.reason
    except FaceNotFoundError as e:
        return "no_face", str(e).removeprefix(f"{src}: ")
    record = {
        "aligner": r.method,
        "n_faces": str(r.n_faces),
        "box": _fmt(r.chosen_box),
        "points": _fmt(r.landmarks),
        "matrix": _fmt(r.matrix),
    }
    save_image(r.image, dst, text={f"ideface.{k}": v for k, v in record.items()})
    return "ok", record


def _read_record(path: Path) -> dict:
    """The alignment record an aligned PNG carries (written by :func:`align_photo`)."""
    text = open_image(path).info
    return {k: text.get(f"ideface.{k}", "") for k in ("aligner", "n_faces", "box", "points", "matrix")}


def _align_work(job: tuple) -> tuple[str, str, dict | str]:
    src, dst, size, detector, weights_root = job
    kind, detail = align_photo(Path(src), Path(dst), size, detector, weights_root)
    return src, kind, detail


def _atomic_lines(path: Path, lines: list[str]) -> None:
    atomic_write_text(path, "\n".join(lines) + "\n")


def align_folder(
    src: str | os.PathLike,
    out: str | os.PathLike,
    size: int = 1024,
    detector: str = "auto",
    workers: int = 0,
    weights_root=None,
    progress: bool = True,
) -> AlignReport:
    """Align every photo under ``src`` into ``out`` (module docstring); returns what it did."""
    from data.face_detection import choose_detector

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise MissingDataError(f"--src {src} is not a folder of photos")
    choose_detector(detector, weights_root)  # a named aligner that is not installed stops here, once
    photos = sorted(
        p
        for p in src.rglob("*")
        if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file() and not p.resolve().is_relative_to(out.resolve())
    )
    if not photos:
        raise MissingDataError(f"{src}: no photos ({', '.join(sorted(PHOTO_SUFFIXES))})")
    targets: dict[Path, Path] = {}
    for p in photos:
        target = out / p.relative_to(src).with_suffix(".png")
        if target in targets.values():
            first = next(q for q, t in targets.items() if t == target)
            raise ValueError(f"{first} and {p} would both become {target}; rename one")
        targets[p] = target
    report = AlignReport(out=out)
    records: dict[Path, dict] = {}
    for p in photos:
        try:
            records[p] = _read_record(targets[p])
        except (FileNotFoundError, BadImageError):  # not done yet, or damaged since: (re)align it
            pass
    report.skipped = len(records)
    todo = [(str(p), str(targets[p]), size, detector, weights_root) for p in photos if p not in records]
    bar = tqdm(total=len(todo), desc="align photos", disable=not progress or not todo, dynamic_ncols=True)
    with contextlib.ExitStack() as stack:
        if workers > 0 and todo:
            pool = stack.enter_context(ProcessPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)))
            results = pool.map(_align_work, todo, chunksize=4)
        else:
            results = map(_align_work, todo)
        done = []
        for result in results:
            done.append(result)
            bar.update(1)
    bar.close()
    for path, kind, detail in done:
        if kind == "ok":
            records[Path(path)] = detail
            report.aligned += 1
        else:
            report.bad.append((path, kind, " ".join(str(detail).split())))
    for record in records.values():
        report.aligners[record["aligner"]] = report.aligners.get(record["aligner"], 0) + 1
    _atomic_lines(
        out / "alignment.tsv",
        [ALIGN_HEADER]
        + [
            "\t".join([str(p.relative_to(src))] + [r[k] for k in ("aligner", "n_faces", "box", "points", "matrix")])
            for p, r in sorted(records.items())
        ],
    )
    _atomic_lines(out / "bad_files.tsv", [ALIGN_BAD_HEADER] + ["\t".join(b) for b in sorted(report.bad)])
    return report
