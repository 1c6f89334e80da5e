"""The NVlabs stylegan2-ada-pytorch generator's state dict (G / G_ema) in rosinality's layout: what
``ideface-convert`` writes, a checkpoint ``models.stylegan2.load_generator`` reads strictly.

Layout facts (REFERENCE.md section 1): ``mapping.fc{i}`` -> ``style.{i+1}``; ``synthesis.b4.const`` ->
``input.input``; ``b4.conv1`` -> ``conv1``; ``b{r}.conv0|conv1`` -> ``convs.{2k}|{2k+1}``; ``torgb`` ->
``to_rgb1``/``to_rgbs.{k}``; ``affine`` -> ``modulation``; ``noise_strength`` -> ``noise.weight``;
``noise_const`` -> ``noises.noise_{i}``. stylegan2-ada-pytorch runs its up-convolutions as a transposed
convolution of the unflipped weight, exactly like rosinality, and its TF importer (legacy.py) already
flips the TF up-conv weights and adds 1 to the TF affine biases; so weights from an NVlabs *PyTorch*
network map unchanged. ``flip_up_weights`` and ``affine_bias_offset=1`` (the command's flags of those names) are
for state dicts
holding raw TF-layout values (weights transposed to OIHW but not otherwise converted).
"""

from __future__ import annotations

import math
import re

import torch

from models.stylegan2 import Generator
from models.stylegan2_layers import make_kernel


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
