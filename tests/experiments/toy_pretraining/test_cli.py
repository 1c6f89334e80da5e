"""The command line: options a network does not have, --init outside stylegan2 and a bad device stop
before anything is trained."""

import pytest

from experiments.toy_pretraining.arcface import ArcFaceConfig
from experiments.toy_pretraining.cli import cli_overrides, main, parse_args
from experiments.toy_pretraining.generator import GeneratorConfig


def test_cli_overrides_reject_options_a_network_does_not_have():
    args = parse_args(["arcface", "--adversarial-weight", "0.1"])
    with pytest.raises(SystemExit, match="--adversarial-weight"):
        cli_overrides(args, ArcFaceConfig)
    assert cli_overrides(parse_args(["all", "--adversarial-weight", "0.1", "--steps", "5"]), ArcFaceConfig) == {
        "steps": 5
    }
    assert cli_overrides(parse_args(["stylegan2", "--adversarial-weight", "0.1"]), GeneratorConfig) == {
        "adversarial_weight": 0.1
    }
    assert cli_overrides(parse_args(["stylegan2", "--lr", "3e-3", "--batch-size", "4"]), GeneratorConfig) == {
        "lr": 3e-3,
        "batch_size": 4,
    }


def test_init_is_an_option_of_stylegan2_only(tmp_path):
    with pytest.raises(SystemExit, match="--init: not an option of `pretrain_toy.py arcface`"):
        main(["arcface", "--init", str(tmp_path / "g.safetensors"), "--work-dir", str(tmp_path / "e")])
    assert not (tmp_path / "e").exists()


def test_bad_device_stops_before_training(tmp_path):
    with pytest.raises(SystemExit, match="error: --device nonsense: not a torch device"):
        main(["arcface", "--device", "nonsense", "--work-dir", str(tmp_path)])
    assert not any(tmp_path.iterdir())
