"""``ideface-benchmark``: the project's benchmarks (``experiments/benchmarks/``), one subcommand each; every
subcommand prints one JSON document on stdout. ``ideface-benchmark --help`` lists them."""

from __future__ import annotations

import sys

from experiments.benchmarks.cli import run
from experiments.errors import one_line_errors


def main(argv=None) -> int:
    def body() -> None:
        run(argv)

    return one_line_errors(body)


if __name__ == "__main__":
    sys.exit(main())
