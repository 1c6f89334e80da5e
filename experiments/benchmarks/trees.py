"""``trees``: one subcommand timed on a reference checkout and on this one, alternately, in one run."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .registry import CODE_ROOT, arg, subcommand

# The name this package runs under in ``trees``' child processes. The copy under it imports its own
# modules relatively and the project's packages from whichever checkout is first on PYTHONPATH, and the
# name is one no checkout has, so the reference's experiments/ (which may hold no benchmarks) is not asked.
RUNNER = "ideface_benchmark_runner"
# Run as a script beside the copy: its folder, not the working folder (as with ``python -m``), is put first
# on sys.path, so relative paths in the command keep their meaning and no checkout's packages shadow PYTHONPATH.
BOOTSTRAP = f"import sys\nfrom {RUNNER}.cli import run\nrun(sys.argv[1:])\n"


@subcommand(
    "trees",
    "one subcommand timed on a reference checkout and on this one, alternately, in one run",
    arg("--reference", required=True, help="the other checkout (e.g. git worktree add /tmp/f35 f35bfda)"),
    arg("--rounds", type=int, default=3),
    arg("command", nargs=argparse.REMAINDER, help="the subcommand and its arguments, after --"),
)
def trees(args) -> dict:
    """Round r runs ``<command>`` once with the reference's packages (first on PYTHONPATH) and once with this
    checkout's, so the machine's load falls on both alike; each result row's figures are reported per round
    and as medians, with reference / this for images_per_s. This package (a copy of it) is the runner either
    way: the command must exist here and use only APIs the reference has (train, inference)."""
    command = [a for a in args.command if a != "--"]
    if not command:
        raise SystemExit("trees: give the subcommand to time after --, e.g. -- inference --pairs 100")
    reference = Path(args.reference).resolve()
    if not (reference / "models").is_dir():
        raise SystemExit(f"trees: --reference {reference} is not a checkout of this project (no models/)")
    runs = {"reference": [], "this": []}
    code_roots = {}
    with tempfile.TemporaryDirectory(prefix="ideface-trees-") as tmp:
        shutil.copytree(Path(__file__).parent, Path(tmp) / RUNNER, ignore=shutil.ignore_patterns("__pycache__"))
        (Path(tmp) / "run.py").write_text(BOOTSTRAP)
        for _ in range(args.rounds):
            for name, root in (("reference", reference), ("this", CODE_ROOT)):
                document = _run_once(command, name, root, tmp)
                code_roots[name] = document.get("code_root")
                runs[name].append(document["results"])
                print(json.dumps({name: runs[name][-1]}), file=sys.stderr, flush=True)
    medians = {name: _medians(rounds) for name, rounds in runs.items()}
    speedups = [
        round(t["images_per_s"] / r["images_per_s"], 3) if "images_per_s" in r else None
        for r, t in zip(medians["reference"], medians["this"])
    ]
    return {
        "benchmark": "trees",
        "reference": str(reference),
        "this": str(CODE_ROOT),
        "command": command,
        "rounds": args.rounds,
        "code_roots": code_roots,  # the packages each runner measured, as it reported them
        "results": medians["this"],
        "reference_results": medians["reference"],
        "speedup_this_over_reference": speedups,
        "per_round": runs,
    }


def _run_once(command: list[str], name: str, root: Path, runner_dir: str) -> dict:
    """The JSON document of ``command`` run by the runner copy with ``root``'s packages."""
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(Path(runner_dir) / "run.py"), *command],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    if proc.returncode != 0:
        raise SystemExit(f"trees: {name} ({root}) failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout)


def _medians(rounds: list[list[dict]]) -> list[dict]:
    """Row by row, the median over rounds of every numeric figure (the first round's other values)."""
    return [
        {k: statistics.median(r[i][k] for r in rounds) if isinstance(v, (int, float)) else v for k, v in row.items()}
        for i, row in enumerate(rounds[0])
    ]
