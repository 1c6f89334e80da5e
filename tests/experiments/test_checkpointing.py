"""Checkpoint lookup and keep-last: resume values, unreadable trainer state, keep-last deleting only the
current run's checkpoints (a real Accelerator save), and a restore that checks every RNG, the weights, the
optimiser and (on a GPU) the CUDA RNG and the fp16 scaler against what was saved."""

import json
import random

import numpy as np
import pytest
import torch

from experiments.checkpointing import (
    ResumeError,
    TrainerState,
    find_resume,
    list_checkpoints,
    read_state,
    restore_checkpoint,
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


def draws(device: str) -> list:
    """One draw from every generator a resume restores (torch, python, numpy; CUDA on a GPU)."""
    out = [torch.rand(3), random.random(), np.random.rand(3)]
    return out + ([torch.rand(3, device=device).cpu()] if device == "cuda" else [])


def saved_run(tmp_path, device: str, mixed_precision: str = "no"):
    """A real Accelerator run on ``device``: one Adam step of a Linear, saved; then every RNG moved on.
    Returns (accelerator, model, optimiser, checkpoint, the draws a restore must reproduce)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # this pytest process may hold another precision
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision=mixed_precision)
    model = torch.nn.Linear(4, 4)
    model, optimizer = accelerator.prepare(model, torch.optim.Adam(model.parameters()))
    with accelerator.autocast():
        loss = model(torch.randn(2, 4, device=accelerator.device)).square().mean()
    accelerator.backward(loss)
    optimizer.step()
    ckpt = save_checkpoint(accelerator, tmp_path / "checkpoints", TrainerState(step=1, run_id="r"), keep_last=1)
    expected = draws(device)
    draws(device)  # the run goes on past the checkpoint
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    return accelerator, model, optimizer, ckpt, expected


def assert_same_draws(a: list, b: list) -> None:
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True))


def check_restore(tmp_path, monkeypatch, device: str, mixed_precision: str = "no") -> None:
    accelerator, model, optimizer, ckpt, expected = saved_run(tmp_path, device, mixed_precision)
    weights = {k: v.clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
    restore_checkpoint(accelerator, ckpt, model, optimizer)
    assert_same_draws(draws(device), expected)
    assert any(not torch.equal(v, weights[k]) for k, v in accelerator.unwrap_model(model).state_dict().items())
    # a load that leaves a generator where it was is caught, and named
    load_state = accelerator.load_state
    perturb = {"torch RNG": lambda: torch.rand(1), "python RNG": random.random, "numpy RNG": np.random.rand}
    if device == "cuda":
        perturb["CUDA RNG"] = lambda: torch.rand(1, device="cuda")
    for name, move in perturb.items():
        monkeypatch.setattr(accelerator, "load_state", lambda path, move=move: (load_state(path), move()))
        with pytest.raises(ResumeError, match=f"is not exact: {name} differ"):
            restore_checkpoint(accelerator, ckpt, model, optimizer)


def test_restore_checks_every_rng_on_the_cpu(tmp_path, monkeypatch):
    check_restore(tmp_path, monkeypatch, "cpu")


@pytest.mark.cuda
def test_restore_checks_the_cuda_rng_and_the_fp16_scaler(tmp_path, monkeypatch):
    check_restore(tmp_path, monkeypatch, "cuda", mixed_precision="fp16")
    (ckpt,) = list_checkpoints(tmp_path / "checkpoints", "r")
    assert (ckpt / "scaler.pt").is_file()  # read through the weights-only reader with the other pieces
