"""The toy world's sizes as the pretraining trains them: read from ``experiments/configs/world/toy.yaml``, their one
statement, so the networks made here fit the world that loads them and a new size is a change of that file."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from experiments.config import load_config


@dataclass(frozen=True)
class ToyWorldSizes:
    """``image_size``: photos, ArcFace inputs and generator output (``generator.size``, = ``data.input_size``);
    ``lr_size``: the LR contour's side; the generator's ``style_dim``, ``n_mlp`` and ``channels`` ((resolution,
    channels) pairs); ``stage_channels`` / ``stage_units``: the encoders' IR-SE layout, which the ID-loss ArcFace
    shares (it initialises the identity encoder)."""

    image_size: int
    lr_size: int
    style_dim: int
    n_mlp: int
    channels: tuple[tuple[int, int], ...]
    stage_channels: tuple[int, ...]
    stage_units: tuple[int, ...]


@cache
def toy_world_sizes(overrides: tuple[str, ...] = ()) -> ToyWorldSizes:
    """The sizes of ``world=toy`` (with config ``overrides`` such as ``"generator.size=32"``); raises ValueError
    when its generator does not draw at the encoders' input size."""
    cfg = load_config(["world=toy", *overrides])
    g, data = cfg.generator, cfg.data
    if g.size != data.input_size:
        raise ValueError(
            f"world=toy: generator.size {g.size} != data.input_size {data.input_size}; the toy networks are trained "
            "at one size (experiments/configs/world/toy.yaml)"
        )
    return ToyWorldSizes(
        image_size=int(g.size),
        lr_size=int(data.lr_size),
        style_dim=int(g.style_dim),
        n_mlp=int(g.n_mlp),
        # as the Generator reads them: resolutions above its size unused (an override merges into the file's)
        channels=tuple(sorted((int(k), int(v)) for k, v in g.channels.items() if int(k) <= g.size)),
        stage_channels=tuple(int(c) for c in cfg.model.stage_channels),
        stage_units=tuple(int(u) for u in cfg.model.stage_units),
    )
