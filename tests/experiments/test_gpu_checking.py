"""The GPU check's CPU-side logic: its plan parses, its part runner records every outcome."""

import json
import re
import subprocess
import sys

import pytest

from experiments import gpu_checking
from experiments.benchmarks.cli import build_parser
from experiments.config import load_config
from experiments.gpu_checking import REPO_ROOT, Part
from tests.conftest import subprocess_env


@pytest.mark.slow
def test_every_planned_command_parses(tmp_path):
    parts = gpu_checking.plan(tmp_path, "9.0")
    names = [p.name for p in parts]
    assert names == [
        "cuda_tests",
        "cuda_build_test",
        "generator",
        "train_1024",
        "pulse_vs_encoder",
        "toy_training",
        "demo",
        "toy_step",
        "toy_compile",
    ]
    assert sum(p.limit_s for p in parts) >= 470  # the budget, not the parts' limits, bounds the check
    parser = build_parser()
    for part in parts:
        assert part.env["TORCH_CUDA_ARCH_LIST"] == "9.0"
        if part.kind == "benchmark":
            assert part.cmd[1] == gpu_checking.BENCHMARK
            parser.parse_args(part.cmd[2:])  # exits (SystemExit) on an unknown flag or choice
        elif part.kind == "training":
            cfg = load_config(part.cmd[2:])
            assert cfg.train.max_steps == 100 and cfg.output_dir == str(tmp_path / "toy_run")
    # the pytest parts select tests that exist: the cuda marker's and the build test
    for part in parts[:2]:
        collected = subprocess.run(
            [*part.cmd, "--collect-only"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            env=subprocess_env(part.env),
            timeout=300,
        )
        assert collected.returncode == 0, collected.stdout[-2000:]
        n = int(re.search(r"(\d+)/\d+ tests? collected", collected.stdout).group(1))
        assert n == 1 if part.name == "cuda_build_test" else n >= 5


def test_run_check_records_ok_failed_timeout_and_skipped(tmp_path):
    py = sys.executable
    parts = [
        Part("ok", [py, "-c", "print('log line'); import json; print(json.dumps({'images_per_s': 3.5}))"], 60),
        Part("failed", [py, "-c", "import sys; print('broken', file=sys.stderr); sys.exit(3)"], 60),
        Part("hangs", [py, "-c", "import time; time.sleep(60)"], 7),
        Part("no_time_left", [py, "-c", "pass"], 60),
    ]
    out = tmp_path / "check.json"
    # the first two take well under 6 s, "hangs" is killed at its limit (7 s, or what is left), and then
    # less than 4 s of the budget is left for the last
    report = gpu_checking.run_check(parts, out, budget_s=10, header={"gpu": "none"}, min_part_s=4)
    assert json.loads(out.read_text()) == report and report["gpu"] == "none"
    ok, failed, hangs, skipped = (report["parts"][p.name] for p in parts)
    assert ok["status"] == "ok" and ok["figures"] == {"images_per_s": 3.5}
    assert failed["status"] == "failed" and failed["rc"] == 3 and "broken" in failed["stderr_tail"]
    assert hangs["status"] == "timeout" and hangs["wall_s"] < 30  # killed, not waited for
    assert skipped["status"] == "skipped" and report["all_ok"] is False
