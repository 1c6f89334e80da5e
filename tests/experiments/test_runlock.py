"""A run folder belongs to one run: the lock refuses a second holder with its pid, and a real second process
launched into a folder a training process holds gets one line and exit code 2; the lock dies with its holder."""

import os
import signal
import subprocess
import sys
import time

import pytest

from experiments.config import REPO_ROOT
from experiments.runlock import RunFolderError, RunLock
from tests.conftest import subprocess_env

from .conftest import tiny_overrides


def test_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    with RunLock(tmp_path / "run", "training"):
        with pytest.raises(RunFolderError) as info:
            RunLock(tmp_path / "run", "evaluating").acquire()
        assert f"pid {os.getpid()}, training" in str(info.value) and "output_dir=" in str(info.value)
    with RunLock(tmp_path / "run", "evaluating"):  # released on exit
        pass
    RunLock(tmp_path / "other", "training", enabled=False).acquire()  # non-main ranks take no lock
    assert not (tmp_path / "other").exists()


@pytest.mark.slow
@pytest.mark.multiproc
def test_two_processes_on_one_run_folder(tiny_nets, tmp_path, capsys):
    """A training process holds its folder; a second launch (train or evaluate) into it is refused naming the
    holder's pid and leaves its metrics alone; once the holder is killed the folder is free again."""
    from experiments.run import main

    tokens = tiny_overrides(
        tiny_nets,
        tmp_path,
        **{"train.max_steps": 10_000, "train.val_every": 10_000, "train.val_metric_pairs": 0, "wandb.mode": "disabled"},
    )
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "experiments" / "run.py"), *tokens],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=subprocess_env({"WANDB_MODE": "disabled"}),
        start_new_session=True,
    )
    try:
        run_dir = tmp_path / "ide-toy-lr-s0"
        deadline = time.time() + 300
        while not (run_dir / "metrics.jsonl").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline
            time.sleep(0.1)
        assert main([*tokens, "resume=latest"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is in use (pid {proc.pid}, training" in err[0], err
        # the refused launch touched nothing: the holder's config is still the one it wrote
        assert "max_steps: 10000" in (run_dir / "config.yaml").read_text()
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with RunLock(run_dir, "checking"):  # the kernel dropped the killed holder's lock
        pass
