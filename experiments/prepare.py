"""``ideface-prepare``: one-time dataset preparation (``celebahq``: label maps, sketches, manifests) and
photo alignment (``align``), the command line of :mod:`data.prepare`; errors about the user's folders and
files are one line and exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from data.face_detection import DETECTORS
from data.pairs import PAIRING_MODES
from data.prepare import MissingDataError, align_folder, prepare_celebahq
from models.weights import MissingWeightsError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ideface-prepare", description="one-time dataset preparation and photo alignment"
    )
    sub = parser.add_subparsers(dest="dataset", required=True)
    p = sub.add_parser("celebahq", help="CelebAMask-HQ + CelebA identity/partition files")
    p.add_argument("--root", required=True, help="folder with CelebA-HQ-img/, CelebAMask-HQ-mask-anno/, ...")
    p.add_argument(
        "--out", default=None, help="output folder (default <root>/ideface-prepared; pass it as data.cache_dir)"
    )
    p.add_argument("--size", type=int, default=256, help="label-map / sketch size (= data.input_size)")
    p.add_argument("--n-per-contour", type=int, default=10, help="identity images per test contour")
    p.add_argument("--seed", type=int, default=0, help="manifest seed")
    p.add_argument(
        "--modes",
        nargs="+",
        default=list(PAIRING_MODES),
        choices=PAIRING_MODES,
        help="pairing modes to write test manifests for",
    )
    p.add_argument("--workers", type=int, default=0, help="worker processes (0: this process)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = sub.add_parser("align", help="align a folder of raw photos like FFHQ/CelebA-HQ (sub-folders kept)")
    a.add_argument("--src", required=True, help="folder of photos (searched recursively)")
    a.add_argument("--out", required=True, help="output folder: <out>/<sub-folder>/<name>.png")
    a.add_argument("--size", type=int, default=1024, help="output side in pixels (CelebA-HQ/FFHQ: 1024)")
    a.add_argument(
        "--detector",
        choices=DETECTORS,
        default="auto",
        help="aligner (auto: dlib, else insightface buffalo_l, else cascade)",
    )
    a.add_argument("--weights-root", default=None, help="weights folder holding buffalo_l (insightface)")
    a.add_argument("--workers", type=int, default=0, help="worker processes (0: this process)")
    a.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.dataset == "align":
        try:
            report = align_folder(
                args.src,
                args.out,
                args.size,
                args.detector,
                args.workers,
                args.weights_root,
                progress=not args.no_progress,
            )
        except (MissingDataError, MissingWeightsError, ValueError) as e:
            print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
            return 2
        print(report.text())
        return 0
    try:
        report = prepare_celebahq(
            args.root,
            args.out,
            args.size,
            args.n_per_contour,
            args.seed,
            args.modes,
            args.workers,
            progress=not args.no_progress,
        )
    except (MissingDataError, ValueError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(report.text())
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
