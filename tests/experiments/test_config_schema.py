"""The config schema's checks: choices, value ranges and required values (``experiments.config_schema``)."""

import pytest
import yaml
from omegaconf import OmegaConf

from experiments.config import load_config
from experiments.config_schema import CHOICES, RANGES, ConfigError, validate


def test_every_checked_key_is_in_the_schema():
    """A misspelt key in CHOICES or RANGES would check nothing (OmegaConf.select gives None)."""
    cfg = load_config([])
    for key in [*CHOICES, *(key for key, _, _ in RANGES)]:
        parent, _, leaf = key.rpartition(".")
        assert leaf in (OmegaConf.select(cfg, parent) if parent else cfg), key


@pytest.mark.parametrize(
    "override,needle",
    [
        ("data.condition=xyz", "allowed: lr, mask, sketch"),
        ("model.n_iters=0", "n_iters"),
        ("train.warmup_steps=-5", "'train.warmup_steps': -5; it must be >= 0"),
        ("train.max_steps=0", "'train.max_steps': 0; it must be >= 1"),
        ("train.max_steps=-3", "'train.max_steps': -3; it must be >= 1"),
        ("train.ckpt_every=0", "'train.ckpt_every': 0; it must be >= 1"),
        ("train.log_every=0", "'train.log_every': 0; it must be >= 1"),
        ("train.val_every=0", "'train.val_every': 0"),
        ("train.lr=-1e-4", "'train.lr': -0.0001; it must be > 0"),
        ("train.lr=0", "'train.lr': 0.0; it must be > 0"),
        ("train.val_batch=0", "'train.val_batch': 0; it must be >= 1"),
        ("data.lr_size=0", "'data.lr_size': 0; it must be >= 1"),
        ("data.lr_size=128", "data.lr_size=128 is larger than data.input_size=32"),
        ("data.input_size=100", "'data.input_size': 100; it must be a power of two >= 4"),
        ("generator.size=96", "'generator.size': 96; it must be a power of two >= 4"),
        ("eval.batch_size=0", "'eval.batch_size': 0"),
        ("eval.max_pairs=0", "'eval.max_pairs': 0; it must be null or >= 1"),
        ("eval.id_crop=[0.5,0.2,0,1]", "'eval.id_crop'"),
        ("train.keep_last=-1", "'train.keep_last': -1; it must be >= 0"),
        ("loss.id=-0.5", "'loss.id': -0.5; it must be >= 0"),
        ("pulse.steps=0", "'pulse.steps': 0"),
        ("model.stage_units=[1,1,1]", "'model.stage_units': [1, 1, 1]"),
        ("eval.idsim_model=toy_arcface_onnx", "is the ID loss's own network (loss.id_network=toy_arcface)"),
        ("data.options.train_identities=0", "train_identities must be an integer >= 1, got 0"),
        ("data.options.test_identities=abc", "data.options for data.dataset=toy"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_key_and_the_rule(override, needle):
    cfg = load_config([])
    key, _, value = override.partition("=")
    OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False)
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert needle in str(info.value) and "\n" not in str(info.value)
