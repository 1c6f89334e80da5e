"""A web demo of identity-guided generation (Gradio): one contour, one to four identity photos.

::

    python -m experiments.demo --checkpoint toy          # then open http://127.0.0.1:7860

``--checkpoint`` takes anything ``experiments.pipeline.load_pipeline`` takes (a run folder, its ``final/``, or
``toy``). The server binds ``--host`` (default 127.0.0.1) and ``--port`` (7860); ``--share`` asks
Gradio for a public link (off by default: nothing else leaves the machine, analytics are off).

The page, by the checkpoint's contour modality: ``lr`` an LR face image, or a photo made into an
LR contour at the model's LR size (aligned first, like ``generate --make-lr``); ``sketch`` a sketch
image or a drawing on the canvas; ``mask`` a label-index PNG (CelebAMask-HQ classes 0-18). One to
four identity photos, aligned like the CLI (the aligner and each crop are shown). Out come the
final face per identity photo side by side, a slider through the refinement steps, and each
face's identity similarity (IDSIM, the evaluation's ArcFace) to its identity photo and, when
known, to the contour's person: the photo an LR contour was made from, or a toy example's person.
In the toy world the examples are photos of the world's test identities. A bad input (no face,
an unreadable file, a contour of another modality) gives a one-line message in the page.

The page is ``experiments.demo_app``, what is behind it ``experiments.demo_backend``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.face_detection import DETECTORS
from experiments.device import DTYPES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ideface-demo", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="toy", help="run folder, its final/ folder, or 'toy' (default)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="compute precision (autocast below float32)")
    p.add_argument("--detector", choices=DETECTORS, default="auto")
    p.add_argument("--weights-root", type=Path, help="folder of the generator weights (else the run's)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from experiments.demo_app import build_app, launch
    from experiments.demo_backend import Demo
    from experiments.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
        demo = Demo.load(
            args.checkpoint,
            device=device,
            dtype=getattr(torch, args.dtype),
            detector=args.detector,
            weights_root=args.weights_root,
        )
    except (ValueError, OSError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    try:
        launch(build_app(demo), demo, host=args.host, port=args.port, share=args.share)
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
