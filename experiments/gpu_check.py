"""The prepared GPU check: every GPU-only figure of the project in one command, within a wall-clock budget.

    ideface-gpu-check [--out gpu_check.json] [--budget-s 470] [--work-dir DIR]

On one CUDA GPU it runs the parts of ``experiments.gpu_checking.plan`` (the CUDA tests and build, the
generator, 1024 training-step and PULSE benchmarks, a short toy training run, the demo), 8 minutes by
default, the CUDA op builds included, and writes every part's record into one JSON file. A machine without
a CUDA device stops at once with one line (exit 2) and a JSON file saying so; nothing waits for a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from experiments.gpu_checking import cuda_header, plan, run_check, write_json

PROG = "ideface-gpu-check"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON file written")
    parser.add_argument("--budget-s", type=float, default=470, help="wall-clock budget of all parts, seconds")
    parser.add_argument("--work-dir", type=Path, default=None, help="builds and the toy run (default: a temp dir)")
    args = parser.parse_args(argv)
    try:
        header = cuda_header()
    except RuntimeError as err:
        write_json(args.out, {"all_ok": False, "error": str(err)})
        print(f"gpu_check: {err}", file=sys.stderr)
        return 2
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="ideface_gpu_check_"))
    work_dir.mkdir(parents=True, exist_ok=True)
    report = run_check(plan(work_dir, header["capability"]), args.out, args.budget_s, header)
    print(json.dumps(report, indent=2))
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
