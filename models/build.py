"""Build the method named by the config's ``model`` section around a (frozen) generator.

Table 2 rows and Table 1's modified pSp (ablations/*.yaml set exactly these keys):

=============  ===========================================================================
baseline       kind=restyle: BackboneEncoder on cat(contour, identity, output), constant input
ifblock        kind=ide, input_latent=false, identity_init=random
input_latent   kind=ide, input_latent=true, identity_init=random
pretrained_id  kind=ide, input_latent=true, identity_init=pretrained  ("Ours")
psp            kind=psp: GradualStyleEncoder on cat(contour, identity), single pass (n_iters=1)
=============  ===========================================================================

Keys read (``model.*``): kind, n_iters, encoder_layers, encoder_mode, stage_channels, stage_units,
encoder_init, identity_encoder, identity_init, identity_freeze, identity_weights, input_latent,
step_norm_statistics, ifm_hidden, n_ifm_per_block, loss_resolution. ``encoder_init``/``identity_init`` = pretrained load
``identity_weights`` (registry name or path of an ArcFace IR-SE, TreB1eN layout: IR-SE50, or the toy
ArcFace whose stage sizes the config must then repeat). The identity-only knobs are errors, not
silently ignored, for restyle/psp. Design choice: the main/ReStyle/pSp body starts from the same
IR-SE weights as the identity encoder (``encoder_init``; ReStyle does this for its encoder).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from models import inversion
from models.answers import ANSWERS
from models.encoders import BackboneEncoder, GradualStyleEncoder, init_from_irse
from models.ide import IDEEncoder
from models.inversion import IterativeInverter
from models.step_norm import use_step_statistics
from models.weights import resolve_path

# model.kind: the encoder kinds build_model builds, and the kinds with nothing to train: pulse
# (optimisation-based: models.pulse) and the trivial answers (models.answers), evaluated only
EVAL_ONLY = ("pulse", *ANSWERS)
KINDS = (*inversion.KINDS, *EVAL_ONLY)
INITS = ("random", "pretrained")  # model.encoder_init / model.identity_init


@dataclass
class ModelConfig:
    """The ``model`` config section: the encoder method; see the module docstring for how each knob maps
    onto modules. The defaults are the paper's full model ("Ours")."""

    kind: str = "ide"  # KINDS: restyle | ide | psp (build_model); EVAL_ONLY: pulse, the trivial answers
    n_iters: int = 5
    encoder_layers: int = 50
    encoder_mode: str = "ir_se"
    stage_channels: list[int] | None = None  # None = IR-SE50's (64, 128, 256, 512)
    stage_units: list[int] | None = None  # None = the depth's units
    encoder_init: str = "pretrained"  # INITS: random | pretrained: main/ReStyle/pSp body from identity_weights
    identity_encoder: bool = True
    identity_init: str = "pretrained"  # random | pretrained (Table 2's last row)
    identity_freeze: bool = False
    identity_weights: str = "ir_se50"  # registry name or path of the ArcFace IR-SE weights
    input_latent: bool = True
    # BatchNorm running statistics per refinement step in the encoder (the IDE encoder's main branch; not E_id,
    # whose input is the same at every step): models.step_norm. false = one running average, as ReStyle
    step_norm_statistics: bool = False
    ifm_hidden: int = 128
    n_ifm_per_block: int | None = None  # None = every bottleneck of the stage gets an IFM
    loss_resolution: int = 256
    # Fresh generator noise at every training forward, as pSp/ReStyle train; evaluation always uses the
    # generator's fixed noise buffers. False makes training independent of the global RNG.
    randomize_noise: bool = True


DEFAULTS = {f.name: f.default for f in fields(ModelConfig)}


def cfg_get(cfg: Any, key: str) -> Any:
    """``cfg.key`` for a DictConfig, dataclass or mapping; DEFAULTS when absent."""
    if isinstance(cfg, dict):
        value = cfg.get(key, DEFAULTS.get(key))
    else:
        value = getattr(cfg, key, DEFAULTS.get(key))
    if value is not None and not isinstance(value, (str, bool, int, float)):
        value = tuple(value)  # ListConfig / list -> tuple
    return value


def build_model(
    model_cfg: Any,
    generator: nn.Module,
    contour_channels: int,
    latent_avg: torch.Tensor | None = None,
    input_size: int | None = None,
    weights_root: str | None = None,
) -> IterativeInverter:
    """-> IterativeInverter(encoder, generator) for ``model_cfg.kind`` in restyle | ide | psp.

    contour_channels: 3 (LR image), 1 (sketch), 19 (one-hot label map). input_size: encoder input side
    (contour and identity size); None = min(generator.size, 256). latent_avg: see IterativeInverter.
    weights_root: where registry names resolve (models.weights; None = $IDEFACE_WEIGHTS or the default).
    """
    c = lambda key: cfg_get(model_cfg, key)
    kind = c("kind")
    if kind not in inversion.KINDS:
        raise ValueError(f"model.kind={kind!r} is not an encoder method ({' | '.join(inversion.KINDS)})")
    if kind != "ide":
        bad = [k for k in ("identity_encoder", "input_latent") if c(k)]
        if bad:
            raise ValueError(
                f"model.kind={kind} has no identity encoder / input latent: set "
                + ", ".join(f"model.{k}=false" for k in bad)
            )
    elif not c("identity_encoder"):
        raise ValueError("model.kind=ide needs model.identity_encoder=true (the baseline is kind=restyle)")
    for key in ("encoder_init", "identity_init"):
        if c(key) not in INITS:
            raise ValueError(f"model.{key} must be {' | '.join(INITS)}, got {c(key)!r}")
    if kind == "psp" and c("n_iters") != 1:
        raise ValueError(f"model.kind=psp is single-pass: set model.n_iters=1 (got {c('n_iters')})")
    input_size = input_size or min(generator.size, 256)
    common = dict(
        num_layers=c("encoder_layers"),
        mode=c("encoder_mode"),
        n_styles=generator.n_latent,
        style_dim=generator.style_dim,
        input_size=input_size,
        stage_channels=c("stage_channels"),
        stage_units=c("stage_units"),
    )
    if kind == "ide":
        encoder = IDEEncoder(
            contour_channels=contour_channels,
            latent_channels=generator.channels[4] if c("input_latent") else None,
            ifm_hidden=c("ifm_hidden"),
            n_ifm_per_block=c("n_ifm_per_block"),
            identity_freeze=c("identity_freeze"),
            **common,
        )
        if c("identity_init") == "pretrained":
            init_from_irse(encoder.identity, resolve_path(c("identity_weights"), weights_root))
    elif kind == "restyle":
        encoder = BackboneEncoder(input_nc=contour_channels + 6, **common)
    else:
        encoder = GradualStyleEncoder(input_nc=contour_channels + 3, **common)
    if c("encoder_init") == "pretrained":
        init_from_irse(encoder, resolve_path(c("identity_weights"), weights_root))
    if c("step_norm_statistics") and c("n_iters") > 1:
        for name, part in encoder.named_children():
            if name != "identity":
                use_step_statistics(part, c("n_iters"))
    return IterativeInverter(encoder, generator, kind, c("n_iters"), c("loss_resolution"), latent_avg)
