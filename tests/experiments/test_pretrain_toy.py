"""The entry point: ``python experiments/pretrain_toy.py <subcommand>`` (the console script
``ideface-pretrain-toy`` runs the same ``main``) in a fresh interpreter, from another folder."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import subprocess_env

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "pretrain_toy.py"
SUBCOMMANDS = ("arcface", "eval-arcface", "stylegan2", "all", "check", "encoder")


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )


def test_the_script_offers_every_subcommand_and_stops_on_bad_input_with_one_line(tmp_path):
    shown = run_script("--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "{" + ",".join(SUBCOMMANDS) + "}" in shown.stdout
    bad = run_script("arcface", "--device", "nonsense", "--work-dir", str(tmp_path / "w"), cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --device nonsense: not a torch device")
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "w").exists()
