"""Benchmarks, one subcommand each; every subcommand prints one JSON document on stdout.

    ideface-benchmark generator [--sizes 256 1024] [--batches 1 8] [--iters 10]
    ideface-benchmark train [--worlds toy 1024] [--rows ...] [--precisions fp32 bf16] [--compare]
    ideface-benchmark profile [--world toy] [--row input_latent] [--reference]
    ideface-benchmark inference [--checkpoint toy] [--pairs 100]
    ideface-benchmark trees --reference /tmp/f35 -- train --worlds toy --rows input_latent
    ideface-benchmark pulse-vs-encoder [--worlds toy 256 1024] [--batches 1 16]
    ideface-benchmark demo [--threads 2]                 # the web demo's Generate click

Worlds: a world preset (``toy``: the toy world with its shipped weights), or ``256`` / ``1024``: the paper's world
(config ``world=celebahq``) at that generator size with random weights of the same architectures
(StyleGAN2 config-f, LPIPS AlexNet, IR-SE50), which cost the same to run as the pretrained ones
that cannot exist offline.

Adding a subcommand is one decorated function returning a JSON-serialisable dict::

    @subcommand("train", "training-step throughput", arg("--steps", type=int, default=20))
    def train(args):
        return {...}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch

import experiments
from experiments.device import resolve_device

REPO_ROOT = Path(__file__).resolve().parent.parent
# The checkout whose packages are measured: this one, or another put first on PYTHONPATH (``trees``).
CODE_ROOT = Path(experiments.__file__).resolve().parent.parent

PROG = "ideface-benchmark"
SUBCOMMANDS: dict[str, tuple] = {}


def arg(*flags, **kwargs):
    """One argparse argument of a subcommand: ``arg("--steps", type=int, default=20)``."""
    return flags, kwargs


# every subcommand runs on one device with a chosen CPU thread count
DEVICE_ARGS = (
    arg("--device", default=None, help="default: cuda if available, else cpu"),
    arg("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"),
)


def subcommand(name: str, help: str, *arguments):
    """Register ``fn(args) -> dict`` as ``benchmark.py <name>`` with the given :func:`arg` arguments."""

    def register(fn):
        SUBCOMMANDS[name] = (fn, help, arguments)
        return fn

    return register


def environment(device: torch.device) -> dict:
    """What the figures depend on: device, versions, threads."""
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "code_root": str(CODE_ROOT),
    }
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

    device = _setup(args)
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
    return {
        "benchmark": "generator",
        "iters": iters,
        **environment(device),
        "results": results,
        "cuda_speedup": _speedups(results),
    }


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


ROWS = {
    "baseline": "ablation=baseline",
    "ifblock": "ablation=ifblock",
    "input_latent": "ablation=input_latent",
    "pretrained_id": "ablation=pretrained_id",
    "psp": "method=psp",
}


# data.root of a full-size benchmark world: nothing is opened there, the batches are random tensors
RANDOM_INPUTS = "benchmark-feeds-random-inputs"


def world_config(world: str, tokens: list[str]):
    """The run config of benchmark world ``world`` with ``tokens`` on top: a world preset (its shipped
    networks, e.g. toy) or a generator size (the paper's world at that size, random weights)."""
    from experiments.config import load_config

    if not world.isdigit():
        return load_config([f"world={world}", *tokens])
    # No file is read: initialisations that would load one are switched to random.
    return load_config(
        [
            "world=celebahq",
            f"generator.size={int(world)}",
            f"data.root={RANDOM_INPUTS}",
            *tokens,
            "model.encoder_init=random",
            "model.identity_init=random",
        ]
    )


def frozen_networks(cfg, device: torch.device):
    """(generator, latent_avg (style_dim,), ArcFace embedder, LPIPS module) of ``cfg``'s world: the networks
    its preset names (LPIPS None: the objective loads it), or random weights of the real architectures for a
    generator-size world (:func:`world_config`)."""
    from experiments.world import load_frozen_generator
    from models.irse import load_arcface

    if cfg.data.root != RANDOM_INPUTS:
        generator, latent_avg = load_frozen_generator(cfg, device)
        return generator, latent_avg, load_arcface(cfg.loss.id_network, root=cfg.weights_root).to(device), None
    from models.inversion import sample_latent_avg
    from models.irse import Backbone
    from models.lpips_network import lpips_random_trunk
    from models.stylegan2 import Generator

    g = cfg.generator
    generator = Generator(g.size, g.style_dim, g.n_mlp, channel_multiplier=g.channel_multiplier)
    generator = generator.to(device).eval().requires_grad_(False)
    arcface = Backbone(112, 50, "ir_se").to(device).eval().requires_grad_(False)
    perceptual = lpips_random_trunk(learned=True).to(device).eval()
    return generator, sample_latent_avg(generator), arcface, perceptual


def synthetic_batch(cfg, batch: int, device: torch.device) -> dict:
    """Random inputs of a training batch's shapes (the step's cost does not depend on the pixels)."""
    from data.conditions import condition_channels

    s, r = cfg.data.input_size, cfg.model.loss_resolution
    rand = lambda *shape: torch.rand(*shape, device=device) * 2 - 1  # noqa: E731
    return {
        "contour": rand(batch, condition_channels(cfg.data.condition), s, s),
        "identity": rand(batch, 3, s, s),
        "target": rand(batch, 3, r, r),
    }


def _fresh_accelerator(device: torch.device, precision: str):
    """An Accelerator with this mixed precision (its state is a process singleton: reset it first)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=device.type == "cpu", mixed_precision={"fp32": "no", "bf16": "bf16"}[precision])


def _memory_row(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"peak_mem_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 3)}
    import resource

    # the CPU has no per-phase peak: the process's high-water mark so far (rows run in order)
    return {"process_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}


def _setup(args) -> torch.device:
    if args.threads:
        torch.set_num_threads(args.threads)
    return resolve_device(args.device)


def _run_row(row: dict, device: torch.device, fn) -> dict:
    """Fill ``row`` with ``fn()``'s figures, or the error (OOM, ...) that stopped it; print it as it lands."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        row.update(fn())
        row.update(_memory_row(device))
    except (RuntimeError, torch.OutOfMemoryError) as e:
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


# The knobs of the step as it was before this benchmark's --compare existed (f35bfda's arithmetic and work,
# but for the bitwise-equal IR-SE shortcut): what ``train --compare`` measures the current step against, in
# the same process, step for step.
REFERENCE_STEP = ["train.step_constants=false", "generator.factored_backward=false"]


@subcommand(
    "train",
    "training images/s and peak memory of every encoder method (Table 2 rows and pSp)",
    arg("--worlds", nargs="+", default=["toy", "1024"], help="toy and/or generator sizes (random weights)"),
    arg("--rows", nargs="+", default=list(ROWS), choices=list(ROWS)),
    arg("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"]),
    arg("--batch", type=int, default=None, help="global batch (default: the config's, 8)"),
    arg("--n-iters", type=int, default=None, help="refinement steps (default: the config's; pSp is 1)"),
    arg("--iters", type=int, default=None, help="timed steps (default 10 on a GPU, 2 on the CPU)"),
    arg("--warmup", type=int, default=1),
    arg(
        "--compare",
        action="store_true",
        help="also time the reference step (" + " ".join(REFERENCE_STEP) + "), alternating with the current "
        "one step by step, and report reference / current",
    ),
    arg("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides of the current step"),
    *DEVICE_ARGS,
)
def train(args) -> dict:
    """One optimiser step of the training loop (every refinement step's forward and backward, Adam), the
    method's own ``train_step`` under an Accelerator with the given mixed precision, on random inputs.
    With ``--compare`` each timed iteration runs one reference step and one current step, so load that
    comes and goes on a shared machine falls on both alike."""
    from accelerate.state import AcceleratorState

    device = _setup(args)
    iters = args.iters or (10 if device.type == "cuda" else 2)
    results = []
    try:
        for world in args.worlds:
            networks = frozen_networks(world_config(world, []), device)
            for name, precision in [(r, p) for r in args.rows for p in args.precisions]:
                tokens = [ROWS[name]] + ([f"model.n_iters={args.n_iters}"] if args.n_iters and name != "psp" else [])
                variants = {"current": world_config(world, tokens + list(args.set))}
                if args.compare:
                    variants = {"reference": world_config(world, tokens + REFERENCE_STEP), **variants}
                cfg = variants["current"]
                batch = args.batch or cfg.train.batch_size
                row = {
                    "world": world,
                    "row": name,
                    "precision": precision,
                    "batch": batch,
                    "n_iters": cfg.model.n_iters,
                }
                results.append(
                    _run_row(
                        row,
                        device,
                        partial(_train_figures, variants, networks, device, precision, batch, iters, args.warmup),
                    )
                )
    finally:
        # the Accelerator state is a process singleton: leave none behind (its mixed precision would pin
        # every later Accelerator of this process, e.g. when the benchmark runs inside a test session)
        AcceleratorState._reset_state(reset_partial_state=True)
    return {"benchmark": "train", "iters": iters, **environment(device), "results": results}


def encoder_model(cfg, generator, latent_avg):
    """``cfg``'s encoder model around ``generator`` (CPU). Spelled out here rather than imported from
    experiments.methods, whose helper older checkouts timed by ``trees`` do not have."""
    from data.conditions import condition_channels
    from models.build import build_model

    return build_model(
        cfg.model,
        generator,
        condition_channels(cfg.data.condition),
        latent_avg=latent_avg,
        input_size=cfg.data.input_size,
        weights_root=cfg.weights_root,
    )


def train_step_fn(cfg, networks, device, accelerator, batch: int):
    """(one optimiser step of ``cfg``'s method on a fixed random batch, its trainable parameter count)."""
    from experiments.methods import EncoderMethod
    from losses import Objective

    generator, latent_avg, arcface, perceptual = networks
    model = encoder_model(cfg, generator, latent_avg).to(device)
    objective = Objective.from_config(cfg.loss, cfg.weights_root, perceptual_net=perceptual, id_net=arcface)
    method = EncoderMethod(cfg, model, objective.to(device))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
    prepared, optimizer = accelerator.prepare(model, optimizer)
    method.attach(prepared)
    prepared.train()
    data = synthetic_batch(cfg, batch, device)

    def step():
        if hasattr(generator, "set_factored_backward"):  # variants may share the generator (older code: no knob)
            generator.set_factored_backward(cfg.generator.factored_backward)
        method.train_step(data, accelerator)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, method


def _train_figures(variants: dict, networks, device, precision: str, batch: int, iters: int, warmup: int) -> dict:
    accelerator = _fresh_accelerator(device, precision)
    steps = {}
    for name, cfg in variants.items():
        steps[name], method = train_step_fn(cfg, networks, device, accelerator, batch)
    trainable = sum(p.numel() for p in method.model.parameters() if p.requires_grad)
    seconds = interleaved(steps, device, iters, warmup)
    out = {
        "images_per_s": round(batch / seconds["current"], 3),
        "seconds_per_step": round(seconds["current"], 4),
        "trainable_params_m": round(trainable / 1e6, 3),
    }
    if "reference" in seconds:
        out.update(
            reference_images_per_s=round(batch / seconds["reference"], 3),
            reference_seconds_per_step=round(seconds["reference"], 4),
            speedup=round(seconds["reference"] / seconds["current"], 3),
        )
    return out


def interleaved(fns: dict, device: torch.device, iters: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each of ``fns`` (name -> callable), timed in turn: round r calls every
    fn once, so the machine's load during a round falls on all of them. The median resists a round that
    another process slowed down."""
    import statistics

    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            times[name].append(timed(fn, device, 1, 0))
    return {name: statistics.median(t) for name, t in times.items()}


@subcommand(
    "profile",
    "where one training step's time goes: forward and backward by module and by op; GFLOP/s vs peak",
    arg("--world", default="toy", help="toy or a generator size (random weights)"),
    arg("--row", default="input_latent", choices=list(ROWS)),
    arg("--precision", default="fp32", choices=["fp32", "bf16"]),
    arg("--batch", type=int, default=None, help="global batch (default: the config's, 8)"),
    arg("--reference", action="store_true", help="profile the reference step (" + " ".join(REFERENCE_STEP) + ")"),
    arg("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides"),
    arg("--top", type=int, default=15, help="ops listed per direction"),
    *DEVICE_ARGS,
)
def profile(args) -> dict:
    """torch.profiler over one training step (after a warm-up step). Forward time is attributed to the
    module group (encoder children, generator, the loss networks) whose forward ran the op; backward time
    to the group whose forward op created the autograd node (matched by sequence number); ``other`` is the
    glue between modules (losses' arithmetic, pooling, concatenation). Self times, in ms; the profiler's
    own overhead inflates them a little against ``seconds_per_step``, timed without it. FLOPs are
    counted by torch's FlopCounterMode (grouped-conv weight gradients corrected, see
    :func:`step_flops`); the peak is the best of a large matmul and a large conv on this device."""
    from accelerate.state import AcceleratorState

    device = _setup(args)
    tokens = [ROWS[args.row], *(REFERENCE_STEP if args.reference else []), *args.set]
    cfg = world_config(args.world, tokens)
    batch = args.batch or cfg.train.batch_size
    try:
        accelerator = _fresh_accelerator(device, args.precision)
        step, method = train_step_fn(cfg, frozen_networks(cfg, device), device, accelerator, batch)
        step()
        seconds = timed(step, device, 1, 0)
        figures = profile_step(step, module_groups(method), args.top)
        flops = step_flops(step)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    peak = peak_gflops(device)
    achieved = flops / seconds / 1e9
    return {
        "benchmark": "profile",
        **environment(device),
        "world": args.world,
        "row": args.row,
        "precision": args.precision,
        "batch": batch,
        "n_iters": cfg.model.n_iters,
        "tokens": tokens,
        "seconds_per_step": round(seconds, 4),
        "gflop_per_step": round(flops / 1e9, 2),
        "achieved_gflop_s": round(achieved, 1),
        "peak_gflop_s": peak,
        "fraction_of_peak": round(achieved / max(peak.values()), 3),
        **figures,
    }


def module_groups(method) -> dict[str, torch.nn.Module]:
    """The named parts of a training step: the encoder's children, the generator, the loss networks."""
    groups = {f"encoder.{name}": child for name, child in method.model.encoder.named_children()}
    groups["generator"] = method.model.decoder
    for name in ("perceptual", "identity"):
        if getattr(method.objective, name) is not None:
            groups[f"loss.{name}"] = getattr(method.objective, name)
    return groups


def profile_step(step, groups: dict[str, torch.nn.Module], top: int) -> dict:
    """Run ``step`` under torch.profiler with every module of ``groups`` scoped; ms by group and by op."""
    from collections import defaultdict

    from torch.profiler import ProfilerActivity, record_function

    open_scopes, handles = {}, []
    for name, root in groups.items():
        for module in root.modules():

            def enter(m, _args, name=name):
                scope = record_function(f"group::{name}")
                scope.__enter__()
                open_scopes.setdefault(id(m), []).append(scope)

            def leave(m, _args, _out):
                open_scopes[id(m)].pop().__exit__(None, None, None)

            handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        with torch.profiler.profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
    finally:
        for h in handles:
            h.remove()
    backward_marker = "autograd::engine::evaluate_function: "

    def ancestors(event):
        while event is not None:
            yield event
            event = event.cpu_parent

    def group_of(event) -> str:
        for a in ancestors(event):
            if a.name.startswith("group::"):
                return a.name[len("group::") :]
            if a.name.startswith("Optimizer.step"):
                return "optimizer"
        return "other"

    events = [e for e in prof.events() if e.name.startswith(("aten::", backward_marker))]
    node_of = {id(e): next((a for a in ancestors(e) if a.name.startswith(backward_marker)), None) for e in events}
    created_by = {e.sequence_nr: group_of(e) for e in events if node_of[id(e)] is None and e.sequence_nr >= 0}
    ms = {k: defaultdict(float) for k in ("fwd_group", "bwd_group", "fwd_op", "bwd_op")}
    for e in events:
        t = e.self_cpu_time_total / 1e3
        node = node_of[id(e)]
        if node is None:
            ms["fwd_group"][group_of(e)] += t
            ms["fwd_op"][e.name] += t
        else:
            ms["bwd_group"][created_by.get(node.sequence_nr, "unattributed")] += t
            ms["bwd_op"][node.name[len(backward_marker) :]] += t
    ranked = lambda d, n=None: {k: round(v, 1) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:n]}  # noqa: E731
    return {
        "profiled_forward_ms": round(sum(ms["fwd_group"].values()), 1),
        "profiled_backward_ms": round(sum(ms["bwd_group"].values()), 1),
        "forward_ms_by_module": ranked(ms["fwd_group"]),
        "backward_ms_by_module": ranked(ms["bwd_group"]),
        "forward_ms_by_op": ranked(ms["fwd_op"], top),
        "backward_ms_by_node": ranked(ms["bwd_op"], top),
    }


def step_flops(fn) -> int:
    """Floating-point operations of one call of ``fn`` (torch's FlopCounterMode: 2 per multiply-add).

    torch's formula for a convolution's weight gradient ignores groups (it counts a grouped conv's as
    if every group saw every channel): the modulated convs of StyleGAN2, grouped by batch, would count
    B times too many. A conv's input gradient and weight gradient each cost what its forward costs,
    which is counted right."""
    from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

    def conv_backward(
        grad_out_shape,
        x_shape,
        w_shape,
        _bias,
        _stride,
        _padding,
        _dilation,
        transposed,
        _output_padding,
        _groups,
        output_mask,
        out_shape=None,
        **_,
    ):
        forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
        return forward * (int(output_mask[0]) + int(output_mask[1]))

    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward}) as c:
        fn()
    return c.get_total_flops()


def peak_gflops(device: torch.device) -> dict[str, float]:
    """GFLOP/s of a 2048^3 fp32 matmul and of a 3x3 conv (batch 8, 256 -> 256 channels, 64x64) here."""
    import torch.nn.functional as F

    a, b = torch.randn(2048, 2048, device=device), torch.randn(2048, 2048, device=device)
    x, w = torch.randn(8, 256, 64, 64, device=device), torch.randn(256, 256, 3, 3, device=device)
    matmul = timed(lambda: a @ b, device, 5, 1)
    conv = timed(lambda: F.conv2d(x, w, padding=1), device, 3, 1)
    return {
        "matmul_2048": round(2 * 2048**3 / matmul / 1e9, 1),
        "conv3x3_b8_c256_64px": round(2 * 8 * 256 * 256 * 9 * 64 * 64 / conv / 1e9, 1),
    }


@subcommand(
    "pulse-vs-encoder",
    "seconds per image: modified PULSE vs the IDE encoder (5 refinement steps)",
    arg("--worlds", nargs="+", default=["toy", "256", "1024"], help="toy and/or generator sizes (random weights)"),
    arg("--batches", type=int, nargs="+", default=[1, 16]),
    arg("--n-iters", type=int, default=5, help="IDE refinement steps"),
    arg(
        "--pulse-steps",
        type=int,
        default=None,
        help="PULSE steps actually run (default: the config's, 100); the per-image time is reported for "
        "the config's steps, scaled linearly (every PULSE step costs the same)",
    ),
    arg("--gaussian-fit-samples", type=int, default=100_000, help="PULSE's Gaussian fit (random worlds)"),
    arg("--iters", type=int, default=1, help="timed calls of each"),
    arg("--warmup", type=int, default=1),
    *DEVICE_ARGS,
)
def pulse_vs_encoder(args) -> dict:
    """Both on the same device and generator, from the same contour (LR) and identity batch; the
    encoder in inference mode (no grad), PULSE with its identity loss (the modified PULSE of Table 1)."""
    from losses.identity import PSP_CROP, IdentityLoss
    from models.pulse import Pulse, PulseConfig, fit_gaussian

    device = _setup(args)
    results = []
    for world in args.worlds:
        cfg = world_config(world, ["ablation=input_latent", f"model.n_iters={args.n_iters}"])
        generator, latent_avg, arcface, _ = frozen_networks(cfg, device)
        model = encoder_model(cfg, generator, latent_avg).to(device).eval()
        configured_steps = cfg.pulse.steps
        pulse_cfg = PulseConfig.from_section(cfg.pulse, steps=args.pulse_steps or configured_steps)
        mean, std = fit_gaussian(generator, args.gaussian_fit_samples)
        pulse = Pulse(
            generator,
            mean,
            std,
            IdentityLoss(arcface, crop=cfg.loss.get("id_crop") or PSP_CROP),
            pulse_cfg,
            lr_size=cfg.data.lr_size,
        ).to(device)
        for batch in args.batches:
            row = {
                "world": world,
                "batch": batch,
                "n_iters": args.n_iters,
                "pulse_steps_run": pulse_cfg.steps,
                "pulse_steps": configured_steps,
            }
            data = synthetic_batch(cfg, batch, device)
            results.append(
                _run_row(
                    row,
                    device,
                    partial(
                        _pulse_vs_encoder_figures,
                        model,
                        pulse,
                        data,
                        args.n_iters,
                        configured_steps / pulse_cfg.steps,
                        device,
                        args,
                    ),
                )
            )
    return {"benchmark": "pulse-vs-encoder", **environment(device), "results": results}


def _pulse_vs_encoder_figures(model, pulse, data: dict, n_iters: int, pulse_scale: float, device, args) -> dict:
    from models.inversion import iterate

    def encoder_call():
        with torch.no_grad():
            for _ in iterate(model, data["contour"], data["identity"], n_iters):
                pass

    batch = data["contour"].shape[0]
    encoder = timed(encoder_call, device, args.iters, args.warmup) / batch
    pulse_s = timed(partial(pulse, data["contour"], data["identity"]), device, args.iters, args.warmup)
    pulse_s = pulse_s / batch * pulse_scale
    return {
        "encoder_s_per_image": round(encoder, 5),
        "pulse_s_per_image": round(pulse_s, 4),
        "pulse_over_encoder": round(pulse_s / encoder, 1),
    }


@subcommand(
    "inference",
    "images/s of load_pipeline(checkpoint) and of the evaluation loop on the toy test pairs",
    arg("--checkpoint", default="toy", help="a run folder, or toy (the shipped toy encoder)"),
    arg("--batch", type=int, default=50, help="pairs per call (the toy eval batch)"),
    arg("--pairs", type=int, default=100, help="test pairs timed per iteration"),
    arg("--iters", type=int, default=3, help="timed passes over the pairs"),
    arg("--warmup", type=int, default=1),
    *DEVICE_ARGS,
)
def inference(args) -> dict:
    """``pipeline``: ``load_pipeline(checkpoint).run_tensors`` (every refinement step, no grad) over the
    first ``--pairs`` toy test pairs in batches of ``--batch``; ``evaluation``: the evaluation loop's work
    on them, the same outputs plus ``MetricSuite.per_pair`` (LPIPS, IDSIM, FID features). The pairs are
    rendered beforehand: the renderer's cost is the data's, not the loop's. Only APIs older checkouts share,
    so ``trees`` can time one against this."""
    from experiments.config import load_config
    from experiments.pipeline import load_pipeline
    from experiments.world import build_dataset
    from metrics.suite import MetricSuite

    device = _setup(args)
    cfg = load_config(["world=toy"])
    test_set = build_dataset(cfg, "test")
    items = [test_set[i] for i in range(min(args.pairs, len(test_set)))]
    batches = [
        {
            k: torch.stack([it[k] for it in items[i : i + args.batch]]).to(device)
            for k in ("contour", "identity", "target")
        }
        for i in range(0, len(items), args.batch)
    ]
    pipe = load_pipeline(args.checkpoint, device=device)
    suite = MetricSuite.from_config(cfg, device)

    def pipeline():
        for b in batches:
            pipe.run_tensors(b["contour"], b["identity"])

    def evaluation():
        for b in batches:
            suite.per_pair(pipe.run_tensors(b["contour"], b["identity"]).image, b["target"], b["identity"])

    seconds = interleaved({"pipeline": pipeline, "evaluation": evaluation}, device, args.iters, args.warmup)
    n = len(items)
    return {
        "benchmark": "inference",
        **environment(device),
        "checkpoint": args.checkpoint,
        "pairs": n,
        "batch": args.batch,
        "iters": args.iters,
        "results": [
            {"loop": name, "images_per_s": round(n / t, 2), "seconds_per_pass": round(t, 3)}
            for name, t in seconds.items()
        ],
    }


@subcommand(
    "trees",
    "one subcommand timed on a reference checkout and on this one, alternately, in one run",
    arg("--reference", required=True, help="the other checkout (e.g. git worktree add /tmp/f35 f35bfda)"),
    arg("--rounds", type=int, default=3),
    arg("command", nargs=argparse.REMAINDER, help="the subcommand and its arguments, after --"),
)
def trees(args) -> dict:
    """Round r runs ``benchmark.py <command>`` once with the reference's packages (first on PYTHONPATH) and
    once with this checkout's, so the machine's load falls on both alike; each result row's figures are
    reported per round and as medians, with reference / this for images_per_s. This file is the runner
    either way: the command must exist here and use only APIs the reference has (train, inference)."""
    import statistics

    command = [a for a in args.command if a != "--"]
    if not command:
        raise SystemExit("trees: give the subcommand to time after --, e.g. -- inference --pairs 100")
    reference = Path(args.reference).resolve()
    if not (reference / "models").is_dir():
        raise SystemExit(f"trees: --reference {reference} is not a checkout of this project (no models/)")
    runs = {"reference": [], "this": []}
    for _ in range(args.rounds):
        for name, root in (("reference", reference), ("this", REPO_ROOT)):
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), *command],
                capture_output=True,
                text=True,
                env={
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
                },
            )
            if proc.returncode != 0:
                raise SystemExit(f"trees: {name} ({root}) failed: {proc.stderr.strip().splitlines()[-1:]}")
            runs[name].append(json.loads(proc.stdout)["results"])
            print(json.dumps({name: runs[name][-1]}), file=sys.stderr, flush=True)
    medians = {}
    for name, rounds in runs.items():
        medians[name] = [
            {
                k: statistics.median(r[i][k] for r in rounds) if isinstance(v, (int, float)) else v
                for k, v in row.items()
            }
            for i, row in enumerate(rounds[0])
        ]
    speedups = [
        round(t["images_per_s"] / r["images_per_s"], 3) if "images_per_s" in r else None
        for r, t in zip(medians["reference"], medians["this"])
    ]
    return {
        "benchmark": "trees",
        "reference": str(reference),
        "this": str(REPO_ROOT),
        "command": command,
        "rounds": args.rounds,
        "results": medians["this"],
        "reference_results": medians["reference"],
        "speedup_this_over_reference": speedups,
        "per_round": runs,
    }


@subcommand(
    "demo",
    "the web demo (experiments/demo.py): seconds per Generate click of one contour and four identity photos",
    arg("--checkpoint", default="toy", help="a toy-world checkpoint (the examples are its test identities)"),
    arg("--iters", type=int, default=5, help="timed calls of each"),
    arg("--warmup", type=int, default=1),
    arg("--no-server", action="store_true", help="skip the round trip through a local server (gradio_client)"),
    *DEVICE_ARGS,
)
def demo(args) -> dict:
    """The first toy example (an LR contour made from a photo, four identity photos). Rows: ``pipeline``
    (the encoder and generator alone, prepared tensors), ``click`` (``Demo.generate``: reading and
    aligning the files, generation, IDSIM, the display images) and ``round_trip`` (the page's
    ``/generate`` endpoint through gradio_client on 127.0.0.1: uploads, the click, downloads). Each row
    gives wall seconds and the process's CPU seconds per call (the CPU figure is what a busy machine
    does not change; the server's CPU time is in the same process)."""
    from experiments.demo_app import Demo, Upload

    device = _setup(args)
    d = Demo.load(args.checkpoint, device=device)
    if not d.examples.rows:
        raise SystemExit(f"benchmark demo: {args.checkpoint} is not a toy-world checkpoint (no examples to run)")
    mode, contour, *ids = d.examples.rows[0]
    click = partial(d.generate, mode, Upload.of(contour), [Upload.of(p) for p in ids], aligned=True)
    c, _ = d.read_contour(mode, Upload.of(contour), aligned=True)
    identity = torch.stack([d.read_identity(Upload.of(p), aligned=True)[0] for p in ids])
    calls = {"pipeline": partial(d.pipe.run_tensors, c[None].expand(len(ids), -1, -1, -1), identity), "click": click}
    app = None
    if not args.no_server:
        app, calls["round_trip"] = _demo_round_trip(d, mode, contour, ids)
    results = []
    try:
        for name, fn in calls.items():
            row = {"row": name, "faces": len(ids), "n_iters": d.pipe.n_iters}
            results.append(_run_row(row, device, partial(_wall_and_cpu, fn, device, args.iters, args.warmup)))
    finally:
        if app is not None:
            with contextlib.redirect_stdout(sys.stderr):  # gradio says goodbye on stdout, which is for the JSON
                app.close()
        d.close()
    return {
        "benchmark": "demo",
        "checkpoint": str(args.checkpoint),
        **environment(device),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "results": results,
    }


def _wall_and_cpu(fn, device: torch.device, iters: int, warmup: int) -> dict:
    cpu = time.process_time()
    wall = timed(fn, device, iters, warmup)
    cpu = (time.process_time() - cpu) / (iters + warmup)  # warm-up calls cost the same once warm
    return {"seconds": round(wall, 3), "cpu_seconds": round(cpu, 3)}


def _demo_round_trip(d, mode: str, contour: str, ids: list[str]):
    """Launch the demo page on a free 127.0.0.1 port; (the app, a function making one /generate call)."""
    from gradio_client import Client, handle_file

    from experiments.demo_app import build_app, launch

    app = build_app(d)
    with contextlib.redirect_stdout(sys.stderr):
        url = launch(app, d, port=None, block=False)
    client = Client(url, verbose=False)
    files = [handle_file(contour), None, *map(handle_file, ids)]
    return app, partial(client.predict, mode, *files, True, d.pipe.n_iters, "", api_name="/generate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (fn, help_text, arguments) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=fn.__doc__)
        for flags, kwargs in arguments:
            p.add_argument(*flags, **kwargs)
        p.set_defaults(run=fn)
    return parser


def run(argv=None) -> dict:
    """Parse ``argv``, run the subcommand, print its JSON document and return it (user errors: one line
    on stderr and SystemExit 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        resolve_device(getattr(args, "device", None))
    except ValueError as err:
        parser.error(str(err))
    from experiments.errors import one_line_errors

    result: dict = {}
    code = one_line_errors(lambda: result.update(args.run(args)))
    if code:
        raise SystemExit(code)
    print(json.dumps(result, indent=2))
    return result


def main(argv=None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
