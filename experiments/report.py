"""A suite's report: the reproduced tables, per-row loss curves and qualitative grids.

Usage::

    ideface-report [suite dir]            # default: runs (the output_dir of reproduce.py)
    ideface-report runs/paper --online    # also a W&B Report (needs `wandb login`)

Offline (always): ``<suite dir>/report.html`` (self-contained: curves as inline SVG, grids as
base64 PNG) and ``<suite dir>/report.md`` (the same content, images as data URIs), read from
``tables/table*.json`` (written by ``experiments/reproduce.py``) and each row's run records
(``metrics.jsonl``, ``media/*.png``). Online (``--online`` or ``WANDB_MODE=online``, and logged in):
a W&B Report built with ``wandb_workspaces.reports.v2`` with the same tables, loss curves per row
and the validation grids of each row's runs; it is saved to the suite's W&B project.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ideface-report",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Usage::")[1].split("Offline")[0].rstrip(),
    )
    p.add_argument(
        "suite_dir", nargs="?", type=Path, default=Path("runs"), help="the output_dir of reproduce.py (default: runs)"
    )
    p.add_argument(
        "--online", action="store_true", help="also a W&B Report (needs `wandb login`; or WANDB_MODE=online)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from experiments.reporting import build_wandb_report, suite_project, write_offline

    try:
        html_path, md_path = write_offline(args.suite_dir)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {html_path} and {md_path}")
    if args.online or os.environ.get("WANDB_MODE") == "online":
        import wandb

        api = wandb.Api()
        if not api.api_key:
            print("error: not logged in to W&B (run `wandb login`); the offline report is written", file=sys.stderr)
            return 2
        report = build_wandb_report(args.suite_dir, suite_project(args.suite_dir), api.default_entity)
        report.save()
        print(f"W&B report: {report.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
