"""Convert an NVlabs stylegan2-ada-pytorch generator (G_ema) to rosinality's checkpoint format.

    ideface-convert ffhq.pkl stylegan2-ffhq-config-f.pt --trust-pickle [--nvlabs-repo PATH]
    ideface-convert g_ema_state_dict.pt out.pt          # an extracted NVlabs state dict

Output: ``{'g_ema': rosinality state dict, 'latent_avg': mapping.w_avg (w_dim,)}``, loadable with
``models.stylegan2.load_generator(out, size, style_dim=..., n_mlp=..., channels=...)`` (the printed JSON
gives the arguments). A ``.pkl`` is unpickled only with ``--trust-pickle``: NVlabs pickles carry
Python source that runs on load. ``--nvlabs-repo`` puts a stylegan2-ada-pytorch checkout on sys.path
(its ``dnnlib``/``torch_utils`` are needed to unpickle; its ``legacy.py`` also reads the TF pickles).
When the source network can run, the JSON reports the max abs pixel difference between it and the
converted generator on the same W and constant noise (images in [-1, 1]).
The key mapping and its layout facts are in ``models/nvlabs_format.py``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import torch

from models.nvlabs_format import build_converted, max_pixel_difference, nvlabs_config, nvlabs_to_rosinality
from models.weights import load_torch_file


def load_source(path: Path, trust_pickle: bool, nvlabs_repo: str | None):
    """(state dict, runnable NVlabs generator or None) from a .pkl (trusted) or a state-dict .pt."""
    if path.suffix != ".pkl":
        state = load_torch_file(path)
        return state.get("G_ema", state), None
    if not trust_pickle:
        raise SystemExit(
            f"refusing to unpickle {path}: a pickle runs arbitrary code when loaded (NVlabs "
            "pickles embed their network source). Pass --trust-pickle if you trust the file."
        )
    with open(path, "rb") as f:
        if nvlabs_repo:  # stylegan2-ada-pytorch's own loader, which also converts TF pickles
            sys.path.insert(0, str(Path(nvlabs_repo).resolve()))
            import legacy

            data = legacy.load_network_pkl(f)
        else:
            data = pickle.load(f)
    source = data["G_ema"]
    return source.state_dict(), source


def run(argv=None) -> dict:
    """Parse ``argv`` and convert; returns the report it prints (user errors: one line, SystemExit 2)."""
    p = argparse.ArgumentParser(
        prog="ideface-convert", description="NVlabs stylegan2-ada-pytorch G_ema -> rosinality checkpoint"
    )
    p.add_argument("source", type=Path, help="network .pkl, or a .pt holding G_ema's state dict")
    p.add_argument("dest", type=Path, help="output .pt: {'g_ema', 'latent_avg'}")
    p.add_argument("--trust-pickle", action="store_true", help="allow unpickling (executes code in the file)")
    p.add_argument("--nvlabs-repo", default=None, help="stylegan2-ada-pytorch checkout to import from")
    p.add_argument(
        "--affine-bias-offset",
        type=float,
        default=0.0,
        help="added to modulation biases: 1 for raw TF values, 0 (default) for NVlabs PyTorch",
    )
    p.add_argument("--flip-up-weights", action="store_true", help="flip up-conv kernels (raw TF values only)")
    p.add_argument("--check-images", type=int, default=4, help="images for the pixel-difference report")
    args = p.parse_args(argv)
    from experiments.errors import one_line_errors

    report: dict = {}
    code = one_line_errors(lambda: report.update(convert(args)))
    if code:
        raise SystemExit(code)
    return report


def main(argv=None) -> int:
    run(argv)
    return 0


def convert(args) -> dict:
    """The conversion of ``main``'s arguments; returns the report it prints."""
    from experiments.errors import check_output_file

    check_output_file(args.dest, "dest")
    state, source = load_source(args.source, args.trust_pickle, args.nvlabs_repo)
    cfg = nvlabs_config(state)
    ckpt = nvlabs_to_rosinality(state, args.affine_bias_offset, args.flip_up_weights)
    generator = build_converted(ckpt, cfg)
    report = {"dest": str(args.dest), **cfg, "max_pixel_difference": None}
    if source is not None:
        try:
            report["max_pixel_difference"] = max_pixel_difference(source, generator, args.check_images)
        except Exception as e:  # the source's own code may not run here (e.g. CUDA-only plugins)
            report["check_skipped"] = f"{type(e).__name__}: {e}"
    args.dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, args.dest)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    sys.exit(main())
