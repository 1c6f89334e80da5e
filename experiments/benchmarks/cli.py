"""The ``ideface-benchmark`` command line: one argparse subcommand per registered benchmark."""

from __future__ import annotations

import argparse
import json

from experiments.device import resolve_device

# each module registers its subcommands when imported
from . import generator, inference, profiling, pulse, training, trees  # noqa: F401
from .registry import SUBCOMMANDS

PROG = "ideface-benchmark"


def build_parser() -> argparse.ArgumentParser:
    """The parser of every registered subcommand (``args.run`` is the subcommand's function)."""
    from . import __doc__ as package_doc

    parser = argparse.ArgumentParser(prog=PROG, description=package_doc.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (fn, help_text, arguments) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=fn.__doc__)
        for flags, kwargs in arguments:
            p.add_argument(*flags, **kwargs)
        p.set_defaults(run=fn)
    return parser


def run(argv=None) -> dict:
    """Parse ``argv``, run the subcommand, print its JSON document on stdout and return it. A bad argument
    is argparse's usage error (SystemExit 2); other errors propagate (the entry point makes user errors one
    line: ``experiments/benchmark.py``; ``trees`` reports a runner's last stderr line)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        resolve_device(getattr(args, "device", None))
    except ValueError as err:
        parser.error(str(err))
    result = args.run(args)
    print(json.dumps(result, indent=2))
    return result
