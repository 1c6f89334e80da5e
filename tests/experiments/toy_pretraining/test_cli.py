"""The command line: options a network does not have, --init outside stylegan2, a bad device and no FD
draw stop before anything is trained."""

import pytest

from experiments.config_schema import ConfigError
from experiments.toy_pretraining.arcface import ArcFaceConfig
from experiments.toy_pretraining.cli import cli_overrides, main, parse_args
from experiments.toy_pretraining.generator import GeneratorConfig


def test_cli_overrides_reject_options_a_network_does_not_have():
    args = parse_args(["arcface", "--adversarial-weight", "0.1"])
    with pytest.raises(ConfigError, match="--adversarial-weight"):
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


def test_init_is_an_option_of_stylegan2_only(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["arcface", "--init", str(tmp_path / "g.safetensors"), "--work-dir", str(tmp_path / "e")])
    assert stop.value.code == 2
    assert capsys.readouterr().err == "error: --init: not an option of `ideface-pretrain-toy arcface`\n"
    assert not (tmp_path / "e").exists()


def test_bad_device_stops_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["arcface", "--device", "nonsense", "--work-dir", str(tmp_path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device nonsense: not a torch device") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_check_needs_at_least_one_fd_draw(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["check", "--fd-draws", "0", "--work-dir", str(tmp_path / "c")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --fd-draws 0: must be at least 1") and err.count("\n") == 1
    assert not (tmp_path / "c").exists()
