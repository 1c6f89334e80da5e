"""What the step benchmarks run on: benchmark worlds (a world preset, or the paper's world at a generator size
with random weights), their frozen networks, random batches, and one optimiser step of a method."""

from __future__ import annotations

import copy

import torch

ROWS = {
    "baseline": "ablation=baseline",
    "ifblock": "ablation=ifblock",
    "input_latent": "ablation=input_latent",
    "pretrained_id": "ablation=pretrained_id",
    "psp": "method=psp",
}

# The knobs of the step as it was before ``train --compare`` existed (f35bfda's arithmetic and work, but
# for the bitwise-equal IR-SE shortcut): what it measures the current step against, in the same process,
# step for step.
REFERENCE_STEP = ["train.step_constants=false", "generator.factored_backward=false"]

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

    try:
        from models.irse import load_arcface
    except ImportError:  # a checkout from before the recogniser loader moved down (f35bfda), timed by trees
        from losses.identity import load_arcface

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
    """Random inputs of a training batch's shapes, in [-1, 1] (the step's cost does not depend on the pixels):
    contour (B, C, S, S), identity (B, 3, S, S), target (B, 3, R, R)."""
    from data.conditions import condition_channels

    s, r = cfg.data.input_size, cfg.model.loss_resolution

    def rand(*shape):
        return torch.rand(*shape, device=device) * 2 - 1

    return {
        "contour": rand(batch, condition_channels(cfg.data.condition), s, s),
        "identity": rand(batch, 3, s, s),
        "target": rand(batch, 3, r, r),
    }


def fresh_accelerator(device: torch.device, precision: str):
    """An Accelerator with this mixed precision (its state is a process singleton: reset it first)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=device.type == "cpu", mixed_precision={"fp32": "no", "bf16": "bf16"}[precision])


def encoder_model(cfg, generator, latent_avg):
    """``cfg``'s encoder model around ``generator`` (CPU): ``experiments.methods.build_encoder_model``, or on a
    checkout older than that helper (timed by ``trees``, e.g. f35bfda) the ``build_model`` call it makes."""
    try:
        from experiments.methods import build_encoder_model
    except ImportError:
        from data.conditions import condition_channels
        from models.build import build_model

        sizes = {"input_size": cfg.data.input_size, "weights_root": cfg.weights_root}
        return build_model(cfg.model, generator, condition_channels(cfg.data.condition), latent_avg=latent_avg, **sizes)
    return build_encoder_model(cfg, generator, latent_avg)


def train_step_fn(cfg, networks, device, accelerator, batch: int):
    """(one optimiser step of ``cfg``'s method on a fixed random batch, the method)."""
    from experiments.methods import EncoderMethod
    from losses import Objective

    # compiled in place (EncoderMethod): keep the eager networks of other variants eager (get: a reference
    # checkout under ``trees`` may have no such knob)
    if cfg.train.get("compile", False):
        networks = copy.deepcopy(networks)
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
