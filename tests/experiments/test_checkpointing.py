"""Checkpoint lookup and keep-last: resume values, unreadable trainer state, and keep-last deleting only the
current run's checkpoints (a real Accelerator save)."""

import json

import pytest
import torch

from experiments.checkpointing import (
    ResumeError,
    TrainerState,
    find_resume,
    list_checkpoints,
    read_state,
    save_checkpoint,
)


def fake_checkpoint(root, step, run_id):
    folder = root / f"step_{step}"
    folder.mkdir(parents=True)
    (folder / "trainer.json").write_text(json.dumps({"step": step, "run_id": run_id}))
    return folder


def test_resume_values(tmp_path):
    root = tmp_path / "checkpoints"
    assert find_resume(None, root) is None
    with pytest.raises(ResumeError, match="resume=latest: no complete checkpoint in .* pass resume=auto"):
        find_resume("latest", root)
    assert find_resume("auto", root) is None
    fake_checkpoint(root, 2, "a")
    newest = fake_checkpoint(root, 10, "a")
    (root / "step_12.partial").mkdir()  # incomplete: never counts
    assert find_resume("latest", root) == find_resume("auto", root) == newest
    with pytest.raises(ResumeError, match="is not a complete checkpoint"):
        find_resume(str(root / "step_12.partial"), root)


def test_unreadable_trainer_state_names_the_file(tmp_path):
    folder = fake_checkpoint(tmp_path, 3, "a")
    (folder / "trainer.json").write_text('{"step": 3, "run')
    with pytest.raises(ResumeError, match=r"step_3/trainer.json: unreadable trainer state"):
        read_state(folder)


def test_keep_last_only_deletes_the_current_runs_checkpoints(tmp_path):
    from accelerate import Accelerator

    root = tmp_path / "checkpoints"
    other = [fake_checkpoint(root, s, "other-run") for s in (1, 2, 3)]
    accelerator = Accelerator()
    model = accelerator.prepare(torch.nn.Linear(2, 2))
    for step in (4, 5, 6):
        save_checkpoint(accelerator, root, TrainerState(step=step, run_id="this-run"), keep_last=2)
    assert [p.name for p in list_checkpoints(root, "this-run")] == ["step_5", "step_6"]
    assert all(p.is_dir() for p in other)
    assert read_state(root / "step_6").run_id == "this-run" and model is not None


def test_fresh_start_rules(tmp_path):
    from experiments.runlock import RunFolderError
    from experiments.train import check_fresh_start

    run = tmp_path / "run"
    check_fresh_start(run, None)  # an unused folder
    run.mkdir()
    (run / "config.yaml").write_text("seed: 0\n")  # killed before its first checkpoint
    with pytest.raises(RunFolderError, match=r"already holds a started run \(no checkpoint yet\); pass resume="):
        check_fresh_start(run, None)
    check_fresh_start(run, "auto")  # resume=auto restarts it
    fake_checkpoint(run / "checkpoints", 4, "a")
    with pytest.raises(RunFolderError, match=r"a started run \(last checkpoint step_4\)"):
        check_fresh_start(run, None)
    (run / "final").mkdir()
    with pytest.raises(RunFolderError, match="already holds a finished run"):
        check_fresh_start(run, "auto")
