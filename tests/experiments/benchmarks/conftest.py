"""Benchmark subcommands run end to end on tiny settings; their rows are complete (no timing is asserted)."""

import json

import pytest

from experiments.benchmarks.cli import run

# the smallest fp32 training rows on the toy world (every row unless --rows), and one bf16 row
TINY_TRAIN = "train --worlds toy --precisions fp32 --batch 2 --n-iters 2 --iters 1 --warmup 0".split()
BF16_PSP_ROW = "train --worlds toy --rows psp --precisions bf16 --batch 1 --iters 1 --warmup 0".split()


@pytest.fixture
def bench(capsys):
    """``bench(argv)``: the subcommand's result, checked to be the JSON document printed and free of errors."""

    def call(argv: list[str]) -> dict:
        result = run(argv)
        printed = json.loads(capsys.readouterr().out)
        assert printed == json.loads(json.dumps(result))  # the JSON document on stdout is the result
        for row in result.get("results", []):
            assert "error" not in row, row
        return result

    return call
