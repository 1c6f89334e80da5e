"""Generate faces from a contour and an identity photo with a trained checkpoint.

One pair::

    python -m experiments.generate --checkpoint runs/input_latent-toy-lr-s0 \\
        --identity id.png --contour contour.png --out out.png [--steps-out steps/] [--grid grid.png]

Folders (every contour with every identity, or the pairs of a CSV with ``contour`` and ``identity``
columns naming files of the two folders by name or stem; a progress bar shows the batches)::

    python -m experiments.generate --checkpoint CKPT --identity-dir ids/ --contour-dir contours/ \\
        [--pairs manifest.csv] --out outputs/          # writes outputs/<contour>__<identity>.png

``--checkpoint toy`` uses the shipped toy encoder (or the README's toy run). Identity photos are
aligned like the training data (``--detector auto``: dlib's 68 landmarks when the align extra is
installed, else insightface ``buffalo_l`` from the weights registry, else a no-download cascade
detector); the aligner used is printed and written into every output PNG (text chunk
``ideface.aligner``). ``--aligned`` skips that for face crops that are already aligned (e.g.
toy-world images). ``--make-lr N`` turns contour photos into N x N LR
contours (aligned first). ``--seed S`` draws the generator noise from seed S (+ the batch index);
without it the generator's fixed noise is used. Every bad input stops with one line on stderr and
exit code 2 (``--skip-bad`` skips unusable files instead, one line each).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.face_detection import DETECTORS
from experiments.device import DTYPES
from experiments.generation import GRID_MAX_ROWS, InputError


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (then exit code 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="ideface-generate",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[1:]),
    )
    p.add_argument("--checkpoint", required=True, help="run folder, its final/ folder, or 'toy'")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--identity", type=Path, help="identity photo")
    who.add_argument("--identity-dir", type=Path, help="folder of identity photos")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--contour",
        type=Path,
        help="contour image: LR image (any size), sketch (PNG/JPEG) or "
        "mask (class-index PNG or CelebAMask-HQ colour-coded)",
    )
    what.add_argument("--contour-dir", type=Path, help="folder of contour images")
    p.add_argument("--pairs", type=Path, help="CSV with 'contour' and 'identity' columns (folder mode)")
    p.add_argument("--out", type=Path, required=True, help="output image (one pair) or output folder (folder mode)")
    p.add_argument(
        "--modality", choices=("lr", "sketch", "mask"), help="contour type (default and only choice: the checkpoint's)"
    )
    p.add_argument("--steps-out", type=Path, help="folder for every refinement step's image")
    p.add_argument(
        "--grid", type=Path, help=f"image grid: contour | identity | steps | result (first {GRID_MAX_ROWS} pairs)"
    )
    p.add_argument("--size", type=int, help="output side in pixels (default: the generator's)")
    p.add_argument("--aligned", action="store_true", help="photos are aligned face crops: skip detection")
    p.add_argument(
        "--detector",
        choices=DETECTORS,
        default="auto",
        help="face aligner for photos (auto: dlib, else insightface buffalo_l, else cascade)",
    )
    p.add_argument("--make-lr", type=int, metavar="N", help="contours are photos: make N x N LR contours")
    p.add_argument("--n-iters", type=int, help="refinement steps (default: the trained number)")
    p.add_argument("--seed", type=int, help="noise seed (default: the generator's fixed noise)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--weights-root", type=Path, help="folder of the generator weights (else the run's)")
    p.add_argument("--skip-bad", action="store_true", help="skip unusable input files instead of stopping")
    return p


def main(argv: list[str] | None = None) -> int:
    from experiments.errors import one_line_errors
    from experiments.generation import run

    args = build_parser().parse_args(argv)
    return one_line_errors(lambda: run(args), extra=(InputError,))


if __name__ == "__main__":
    sys.exit(main())
