"""The ``ideface-benchmark`` entry point: user errors are one line and exit 2 (the subcommands are tested in
tests/experiments/benchmarks/)."""

import pytest

from experiments import benchmark


def test_bad_device_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["generator", "--device", "gpu0"])
    assert exit_info.value.code == 2
    assert "--device gpu0: not a torch device" in capsys.readouterr().err


def test_bad_config_value_is_one_line(capsys):
    code = benchmark.main(["train", "--worlds", "toy", "--rows", "psp", "--set", "train.lr=-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "lr" in err[0]
