"""The GPU check's command line: where no GPU exists it stops at once (its plan and runner: test_gpu_checking)."""

import json
import subprocess
import sys

from experiments.gpu_checking import REPO_ROOT
from tests.conftest import subprocess_env


def test_without_a_gpu_it_stops_at_once_with_one_line(tmp_path):
    out = tmp_path / "check.json"
    proc = subprocess.run(
        [sys.executable, "experiments/gpu_check.py", "--out", str(out)],
        cwd=REPO_ROOT,
        env=subprocess_env({"CUDA_VISIBLE_DEVICES": ""}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0] and "GPU" in lines[0]
    report = json.loads(out.read_text())
    assert report["all_ok"] is False and "no CUDA device" in report["error"]
