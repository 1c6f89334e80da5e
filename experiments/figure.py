"""The README's figures, one subcommand each.

    ideface-figure identity [--checkpoint toy] [--out notebooks/figures/identity_following.png]
    ideface-figure demo-screenshot [--checkpoint toy] [--out notebooks/figures/demo.png]

``identity``: one toy contour with several people's identity photos, each output scored against both
people (``experiments.identity_figure``). ``demo-screenshot``: the web demo in headless Chromium after
one example's Generate click (``experiments.demo_screenshot``; needs Debian's chromium and
chromium-driver).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.config import REPO_ROOT

FIGURES = REPO_ROOT / "notebooks" / "figures"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ideface-figure", description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("identity", help="whose face comes out: one contour, other people's identity photos")
    p.add_argument("--checkpoint", default="toy", help="a toy-world run folder, its final/ folder, or 'toy'")
    p.add_argument("--out", type=Path, default=FIGURES / "identity_following.png")
    p.add_argument(
        "--contour-person",
        type=int,
        default=0,
        help="position of the contour's person among the test people; the identity photos are the next people's",
    )
    p.add_argument("--identities", type=int, default=4, help="identity photos (other people) fed with the contour")
    p.add_argument("--tile", type=int, default=128, help="pixels per image in the figure")
    p = sub.add_parser("demo-screenshot", help="the web demo's page after one example, in headless Chromium")
    p.add_argument("--checkpoint", default="toy", help="a checkpoint with examples (toy world)")
    p.add_argument("--out", type=Path, default=FIGURES / "demo.png")
    p.add_argument("--row", type=int, default=0, help="which example to run")
    p.add_argument("--width", type=int, default=1280, help="browser window width in CSS pixels")
    p.add_argument("--max-kb", type=int, default=300)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    return parser


def identity(args) -> int:
    from experiments.identity_figure import draw_identity_figure, score_lines

    try:
        fig = draw_identity_figure(args.checkpoint, args.out, args.contour_person, args.identities, args.tile)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    print("\n".join(score_lines(fig)))
    print(f"wrote {args.out}")
    return 0


def demo_screenshot(args) -> int:
    import torch

    from experiments.demo_screenshot import BrowserMissing, screenshot_demo

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        out, status = screenshot_demo(args.checkpoint, args.out, args.row, args.width, args.max_kb)
    except BrowserMissing as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size // 1024} KB): {status}")
    return 0 if status.startswith("Generated") else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"identity": identity, "demo-screenshot": demo_screenshot}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
