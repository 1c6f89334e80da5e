"""The pretraining's sizes come from world/toy.yaml: its networks fit the world that loads them."""

import pytest

from experiments.config import load_config
from experiments.toy_pretraining.arcface import ARCFACES
from experiments.toy_pretraining.generator import GeneratorConfig, build_generator
from experiments.toy_pretraining.sizes import toy_world_sizes
from experiments.world import load_frozen_generator

SMALL = ("generator.size=16", "data.input_size=16", "generator.channels={4: 16, 8: 16, 16: 8}")


def test_the_pretraining_trains_the_world_s_sizes():
    cfg = load_config(["world=toy"])
    g = GeneratorConfig()
    assert (g.size, g.style_dim, g.n_mlp) == (cfg.generator.size, cfg.generator.style_dim, cfg.generator.n_mlp)
    assert dict(g.channels) == {int(k): v for k, v in cfg.generator.channels.items()}
    arc = ARCFACES["toy_arcface"]  # it initialises the identity encoder: the encoders' layout
    assert arc.image_size == cfg.data.input_size
    assert (list(arc.stage_channels), list(arc.stage_units)) == (cfg.model.stage_channels, cfg.model.stage_units)
    # the shipped generator is the one the world loads, so what the pretraining builds loads it strictly
    shipped, _ = load_frozen_generator(cfg, "cpu")
    build_generator(g).load_state_dict(shipped.state_dict())


def test_another_size_is_a_config_change():
    sizes = toy_world_sizes(SMALL)
    assert sizes.image_size == 16 and sizes.channels == ((4, 16), (8, 16), (16, 8))
    assert sizes.lr_size == toy_world_sizes().lr_size
    with pytest.raises(ValueError, match="generator.size 16 != data.input_size 32"):
        toy_world_sizes(SMALL[:1] + SMALL[2:])
