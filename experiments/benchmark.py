"""Benchmarks, one subcommand each; every subcommand prints one JSON document on stdout.

    python experiments/benchmark.py generator [--sizes 256 1024] [--batches 1 8] [--iters 10]

Adding a subcommand is one decorated function returning a JSON-serialisable dict::

    @subcommand("train", "training-step throughput", arg("--steps", type=int, default=20))
    def train(args):
        return {...}
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from functools import partial
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SUBCOMMANDS: dict[str, tuple] = {}


def arg(*flags, **kwargs):
    """One argparse argument of a subcommand: ``arg("--steps", type=int, default=20)``."""
    return flags, kwargs


def subcommand(name: str, help: str, *arguments):
    """Register ``fn(args) -> dict`` as ``benchmark.py <name>`` with the given :func:`arg` arguments."""

    def register(fn):
        SUBCOMMANDS[name] = (fn, help, arguments)
        return fn

    return register


def environment(device: torch.device) -> dict:
    """What the figures depend on: device, versions, threads."""
    info = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cpu_threads": torch.get_num_threads(), "machine": platform.machine()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def timed(fn, device: torch.device, iters: int, warmup: int) -> float:
    """Seconds per call of ``fn`` (mean over ``iters`` after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / iters


@subcommand(
    "generator", "StyleGAN2 generator images/s: fwd and fwd+bwd, ref vs CUDA ops, fp32 vs bf16 autocast",
    arg("--sizes", type=int, nargs="+", default=[256, 1024]),
    arg("--batches", type=int, nargs="+", default=[1, 8]),
    arg("--impls", nargs="+", default=None, help="ops implementations (default: ref, plus cuda on a GPU)"),
    arg("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"]),
    arg("--modes", nargs="+", default=["fwd", "fwd+bwd"], choices=["fwd", "fwd+bwd"]),
    arg("--iters", type=int, default=None, help="timed iterations (default 10 on a GPU, 2 on the CPU)"),
    arg("--warmup", type=int, default=1),
    arg("--device", default=None, help="default: cuda if available, else cpu"),
    arg("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"),
)
def generator(args) -> dict:
    """Config-f generator (style_dim 512, n_mlp 8, channel multiplier 2) from a W+ code with constant
    noise. ``fwd+bwd`` backpropagates an image loss to the W+ input of the frozen generator, as when
    an encoder trains through it."""
    import ops
    from models.stylegan2 import Generator

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    impls = args.impls or (["ref", "cuda"] if device.type == "cuda" else ["ref"])
    iters = args.iters or (10 if device.type == "cuda" else 2)
    results = []
    for size in args.sizes:
        g = Generator(size).to(device).eval().requires_grad_(False)
        for batch in args.batches:
            w = torch.randn(batch, g.n_latent, g.style_dim, device=device)
            for impl, precision, mode in [(i, p, m) for i in impls for p in args.precisions for m in args.modes]:
                ops.set_impl(impl)
                row = {"size": size, "batch": batch, "impl": impl, "precision": precision, "mode": mode}

                try:
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    step = partial(_generator_step, g, w, mode, precision == "bf16", device.type)
                    seconds = timed(step, device, iters, args.warmup)
                    row.update(images_per_s=round(batch / seconds, 3), seconds_per_iter=round(seconds, 4))
                    if device.type == "cuda":
                        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
                except (RuntimeError, torch.OutOfMemoryError) as e:  # record and go on (OOM, no plugin)
                    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                results.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    ops.set_impl("auto")
    return {"benchmark": "generator", "iters": iters, **environment(device), "results": results,
            "cuda_speedup": _speedups(results)}


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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (fn, help_text, arguments) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=fn.__doc__)
        for flags, kwargs in arguments:
            p.add_argument(*flags, **kwargs)
        p.set_defaults(run=fn)
    args = parser.parse_args(argv)
    result = args.run(args)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
