"""``pulse-vs-encoder``: seconds per image of the modified PULSE (optimisation) and of the IDE encoder."""

from __future__ import annotations

from functools import partial

import torch

from .registry import DEVICE_ARGS, arg, environment, run_row, setup, subcommand, timed
from .worlds import encoder_model, frozen_networks, synthetic_batch, world_config


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

    device = setup(args)
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
                run_row(
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
