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

Layout facts (REFERENCE.md section 1): ``mapping.fc{i}`` -> ``style.{i+1}``; ``synthesis.b4.const`` ->
``input.input``; ``b4.conv1`` -> ``conv1``; ``b{r}.conv0|conv1`` -> ``convs.{2k}|{2k+1}``; ``torgb`` ->
``to_rgb1``/``to_rgbs.{k}``; ``affine`` -> ``modulation``; ``noise_strength`` -> ``noise.weight``;
``noise_const`` -> ``noises.noise_{i}``. stylegan2-ada-pytorch runs its up-convolutions as a transposed
convolution of the unflipped weight, exactly like rosinality, and its TF importer (legacy.py) already
flips the TF up-conv weights and adds 1 to the TF affine biases; so weights from an NVlabs *PyTorch*
network map unchanged. ``--flip-up-weights`` and ``--affine-bias-offset 1`` are for state dicts
holding raw TF-layout values (weights transposed to OIHW but not otherwise converted).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import re
import sys
from pathlib import Path

import torch

from models.stylegan2 import Generator, make_kernel
from models.weights import load_torch_file


def nvlabs_config(state_dict) -> dict:
    """Generator kwargs of an NVlabs G state dict: {size, style_dim, n_mlp, channels}."""
    res = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"synthesis\.b(\d+)\.", k))})
    n_mlp = len({k for k in state_dict if re.match(r"mapping\.fc\d+\.weight$", k)})
    style_dim = state_dict["mapping.fc0.weight"].shape[1]
    if state_dict[f"mapping.fc{n_mlp - 1}.weight"].shape[0] != style_dim:
        raise ValueError("rosinality's mapping needs z_dim == w_dim")
    return {
        "size": res[-1],
        "style_dim": int(style_dim),
        "n_mlp": n_mlp,
        "channels": {r: int(state_dict[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in res},
    }


def nvlabs_to_rosinality(state_dict, affine_bias_offset: float = 0.0, flip_up_weights: bool = False) -> dict:
    """NVlabs G / G_ema state dict -> ``{'g_ema': rosinality state dict, 'latent_avg': (w_dim,)}``.

    affine_bias_offset: added to every modulation bias (1 for raw TF values; 0 for NVlabs PyTorch).
    flip_up_weights: flip the up-convolution kernels spatially (raw TF values only).
    Raises ValueError on keys it does not understand (e.g. a conditional network's ``mapping.embed``).
    """
    sd = {k: v.detach().cpu() for k, v in state_dict.items()}
    cfg = nvlabs_config(sd)
    used: set[str] = set()

    def take(key):
        used.add(key)
        return sd[key].float()

    def filter_kernel(block_key):  # rosinality stores the blur kernel with the upsampling gain (4)
        f = sd.get(f"{block_key}.resample_filter")
        return make_kernel(f if f is not None else [1, 3, 3, 1]) * 4

    out = {}
    for i in range(cfg["n_mlp"]):
        out[f"style.{i + 1}.weight"], out[f"style.{i + 1}.bias"] = (
            take(f"mapping.fc{i}.weight"),
            take(f"mapping.fc{i}.bias"),
        )
    out["input.input"] = take("synthesis.b4.const")[None]

    def styled(src, dst, noise_index, up):
        weight = take(f"{src}.weight")
        out[f"{dst}.conv.weight"] = (weight.flip([2, 3]) if up and flip_up_weights else weight)[None]
        out[f"{dst}.conv.modulation.weight"] = take(f"{src}.affine.weight")
        out[f"{dst}.conv.modulation.bias"] = take(f"{src}.affine.bias") + affine_bias_offset
        out[f"{dst}.noise.weight"] = take(f"{src}.noise_strength").reshape(1)
        out[f"{dst}.activate.bias"] = take(f"{src}.bias")
        out[f"noises.noise_{noise_index}"] = take(f"{src}.noise_const")[None, None]
        if up:
            out[f"{dst}.conv.blur.kernel"] = filter_kernel(src)

    def to_rgb(src, dst, up):
        out[f"{dst}.conv.weight"] = take(f"{src}.weight")[None]
        out[f"{dst}.conv.modulation.weight"] = take(f"{src}.affine.weight")
        out[f"{dst}.conv.modulation.bias"] = take(f"{src}.affine.bias") + affine_bias_offset
        out[f"{dst}.bias"] = take(f"{src}.bias").view(1, -1, 1, 1)
        if up:
            out[f"{dst}.upsample.kernel"] = filter_kernel(src.rsplit(".", 1)[0])

    styled("synthesis.b4.conv1", "conv1", 0, False)
    to_rgb("synthesis.b4.torgb", "to_rgb1", False)
    for k, log_res in enumerate(range(3, int(math.log2(cfg["size"])) + 1)):
        block = f"synthesis.b{2**log_res}"
        styled(f"{block}.conv0", f"convs.{2 * k}", 2 * k + 1, True)
        styled(f"{block}.conv1", f"convs.{2 * k + 1}", 2 * k + 2, False)
        to_rgb(f"{block}.torgb", f"to_rgbs.{k}", True)
    latent_avg = take("mapping.w_avg")
    unknown = sorted(k for k in sd if k not in used and not k.endswith("resample_filter"))
    if unknown:
        raise ValueError(f"unsupported NVlabs keys (conditional or non-'skip' networks?): {unknown[:8]}")
    return {"g_ema": out, "latent_avg": latent_avg}


def build_converted(ckpt: dict, cfg: dict) -> Generator:
    """The rosinality Generator holding a converted checkpoint (strict load)."""
    generator = Generator(cfg["size"], cfg["style_dim"], cfg["n_mlp"], channels=cfg["channels"])
    generator.load_state_dict(ckpt["g_ema"], strict=True)
    return generator.eval()


@torch.no_grad()
def max_pixel_difference(source, generator: Generator, n: int = 4, seed: int = 0) -> float:
    """Max |source - converted| over n images from the same z -> W and the stored constant noise.

    source: an NVlabs-API generator (``mapping(z, c)`` -> (B, num_ws, w_dim), ``synthesis(ws,
    noise_mode='const', force_fp32=True)``).
    """
    z = torch.randn(n, generator.style_dim, generator=torch.Generator().manual_seed(seed))
    source = source.float().eval()
    ws = source.mapping(z, None)
    reference = source.synthesis(ws, noise_mode="const", force_fp32=True)
    ours, _ = generator([ws.float()], input_is_latent=True, randomize_noise=False)
    return float((ours - reference.float()).abs().max())


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
