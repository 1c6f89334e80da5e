"""``train``: training images/s and peak memory of every encoder method, optionally beside the reference step."""

from __future__ import annotations

from functools import partial

from .registry import DEVICE_ARGS, arg, environment, interleaved, run_row, setup, subcommand
from .worlds import REFERENCE_STEP, ROWS, fresh_accelerator, frozen_networks, train_step_fn, world_config


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
        nargs="*",
        default=None,
        metavar="KEY=VALUE",
        help="also time a reference step, alternating with the current one step by step, and report reference "
        "/ current: the row with these config overrides, or with none given the step before the hoisting ("
        + " ".join(REFERENCE_STEP)
        + ")",
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

    device = setup(args)
    iters = args.iters or (10 if device.type == "cuda" else 2)
    results = []
    try:
        for world in args.worlds:
            networks = frozen_networks(world_config(world, []), device)
            for name, precision in [(r, p) for r in args.rows for p in args.precisions]:
                tokens = [ROWS[name]] + ([f"model.n_iters={args.n_iters}"] if args.n_iters and name != "psp" else [])
                cfg = world_config(world, tokens + list(args.set))
                variants = {"current": cfg}
                batch = args.batch or cfg.train.batch_size
                row = {
                    "world": world,
                    "row": name,
                    "precision": precision,
                    "batch": batch,
                    "n_iters": cfg.model.n_iters,
                }
                if args.compare is not None:
                    row["reference"] = args.compare or REFERENCE_STEP
                    variants = {"reference": world_config(world, tokens + row["reference"]), **variants}
                figures = partial(_train_figures, variants, networks, device, precision, batch, iters, args.warmup)
                results.append(run_row(row, device, figures))
    finally:
        # the Accelerator state is a process singleton: leave none behind (its mixed precision would pin
        # every later Accelerator of this process, e.g. when the benchmark runs inside a test session)
        AcceleratorState._reset_state(reset_partial_state=True)
    return {"benchmark": "train", "iters": iters, **environment(device), "results": results}


def _train_figures(variants: dict, networks, device, precision: str, batch: int, iters: int, warmup: int) -> dict:
    accelerator = fresh_accelerator(device, precision)
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
