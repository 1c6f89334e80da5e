"""``generator``: the config-f StyleGAN2 generator's images/s, reference vs CUDA ops, fp32 vs bf16."""

from __future__ import annotations

from functools import partial

import torch

from .registry import DEVICE_ARGS, arg, environment, run_row, setup, subcommand, timed


@subcommand(
    "generator",
    "StyleGAN2 generator images/s: fwd and fwd+bwd, ref vs CUDA ops, fp32 vs bf16 autocast",
    arg("--sizes", type=int, nargs="+", default=[256, 1024]),
    arg("--batches", type=int, nargs="+", default=[1, 8]),
    arg("--impls", nargs="+", default=None, help="ops implementations (default: ref, plus cuda on a GPU)"),
    arg("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"]),
    arg("--modes", nargs="+", default=["fwd", "fwd+bwd"], choices=["fwd", "fwd+bwd"]),
    arg("--iters", type=int, default=None, help="timed iterations (default 10 on a GPU, 2 on the CPU)"),
    arg("--warmup", type=int, default=1),
    *DEVICE_ARGS,
)
def generator(args) -> dict:
    """Config-f generator (style_dim 512, n_mlp 8, channel multiplier 2) from a W+ code with constant
    noise. ``fwd+bwd`` backpropagates an image loss to the W+ input of the frozen generator, as when
    an encoder trains through it."""
    import ops
    from models.stylegan2 import Generator

    device = setup(args)
    impls = args.impls or (["ref", "cuda"] if device.type == "cuda" else ["ref"])
    iters = args.iters or (10 if device.type == "cuda" else 2)
    results = []
    try:
        for size in args.sizes:
            g = Generator(size).to(device).eval().requires_grad_(False)
            for batch in args.batches:
                w = torch.randn(batch, g.n_latent, g.style_dim, device=device)
                for impl, precision, mode in [(i, p, m) for i in impls for p in args.precisions for m in args.modes]:
                    row = {"size": size, "batch": batch, "impl": impl, "precision": precision, "mode": mode}
                    ops.set_impl(impl)
                    step = partial(_generator_step, g, w, mode, precision == "bf16", device.type)
                    results.append(run_row(row, device, partial(_images_per_s, step, batch, device, iters, args)))
    finally:
        ops.set_impl("auto")
    return {
        "benchmark": "generator",
        "iters": iters,
        **environment(device),
        "results": results,
        "cuda_speedup": _speedups(results),
    }


def _images_per_s(step, batch: int, device: torch.device, iters: int, args) -> dict:
    seconds = timed(step, device, iters, args.warmup)
    return {"images_per_s": round(batch / seconds, 3), "seconds_per_iter": round(seconds, 4)}


def _generator_step(g, w, mode: str, bf16: bool, device_type: str) -> None:
    with torch.autocast(device_type, torch.bfloat16, enabled=bf16):
        if mode == "fwd":
            with torch.no_grad():
                g([w], input_is_latent=True, randomize_noise=False)
            return
        img, _ = g([w.clone().requires_grad_(True)], input_is_latent=True, randomize_noise=False)
    img.float().square().mean().backward()


def _speedups(results: list[dict]) -> dict:
    """ref time / cuda time for every (size, batch, precision, mode) measured with both."""
    by_key = {(r["size"], r["batch"], r["precision"], r["mode"], r["impl"]): r for r in results if "error" not in r}
    out = {}
    for (size, batch, precision, mode, impl), r in by_key.items():
        cuda = by_key.get((size, batch, precision, mode, "cuda"))
        if impl == "ref" and cuda is not None:
            out[f"{size}/b{batch}/{precision}/{mode}"] = round(r["seconds_per_iter"] / cuda["seconds_per_iter"], 3)
    return out
