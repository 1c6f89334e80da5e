"""``profile``: where one training step's time goes (by module and op, forward vs backward) and its GFLOP/s
against this device's peak."""

from __future__ import annotations

import torch

from .registry import DEVICE_ARGS, arg, environment, setup, subcommand, timed
from .worlds import REFERENCE_STEP, ROWS, fresh_accelerator, frozen_networks, train_step_fn, world_config


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

    device = setup(args)
    tokens = [ROWS[args.row], *(REFERENCE_STEP if args.reference else []), *args.set]
    cfg = world_config(args.world, tokens)
    batch = args.batch or cfg.train.batch_size
    try:
        accelerator = fresh_accelerator(device, args.precision)
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
