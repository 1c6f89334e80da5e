"""The training loop end to end: CLI run, W&B offline run, run record, checkpoints, exact resume
after SIGKILL, and a real 2-process run equal to a 1-process run with the same global batch."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from experiments.config import REPO_ROOT
from tests.conftest import subprocess_env

from .conftest import tiny_overrides, two_process_launcher

RUN = str(REPO_ROOT / "experiments" / "run.py")
pytestmark = pytest.mark.slow


def run_cli(tokens, env=None, launcher=None, timeout=600):
    cmd = (launcher or [sys.executable]) + [RUN, *tokens]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=subprocess_env(env))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def children_of(pid: int) -> list[int]:
    """Direct child process ids of ``pid`` (from /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def encoder_weights(run_dir: Path):
    return load_file(str(run_dir / "final" / "encoder.safetensors"))


def only_run_dir(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if (p / "config.yaml").is_file()]
    return run_dir


@pytest.fixture(scope="module")
def straight(tiny_nets, tmp_path_factory) -> dict:
    """The uninterrupted run's settings. A warm-up that outlasts the SIGKILL below, so the resumed run must
    continue the schedule mid-way; and the generator's noise drawn from torch's global RNG at every step and
    weighing in the output (real runs do both; the tiny world's default draws none, and a fresh generator's
    noise weights are 0), so the resumed run must continue that RNG exactly where its checkpoint left it."""
    state = load_file(str(tiny_nets["g"]))
    for key in state:
        if key.endswith(".noise.weight"):
            state[key] = torch.full_like(state[key], 0.5)
    path = tmp_path_factory.mktemp("noisy") / "g.safetensors"
    save_file(state, str(path))
    return {"train.max_steps": 6, "train.warmup_steps": 4, "model.randomize_noise": "true", "generator.weights": path}


@pytest.fixture(scope="module")
def uninterrupted(tiny_nets, straight, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    run_cli(tiny_overrides(tiny_nets, out, **straight))
    return only_run_dir(out)


def test_run_writes_wandb_record_and_checkpoints(uninterrupted):
    run_dir = uninterrupted
    assert (run_dir / "config.yaml").read_text().startswith("world: toy")
    steps = [
        m["step"] for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "train/loss" in m
    ]
    assert steps == [1, 2, 3, 4, 5, 6]
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    lr = OmegaConf.load(run_dir / "config.yaml").train.lr
    assert [m["train/lr"] for m in metrics if "train/lr" in m] == pytest.approx(
        [lr / 4, lr / 2, 3 * lr / 4, lr, lr, lr]
    )  # the lr each logged step was taken with
    logged = set().union(*metrics)
    # every loss term per refinement step, throughput, memory, validation
    for key in [
        "train/step1/l2",
        "train/step2/lpips",
        "train/step2/id",
        "train/step1/wnorm",
        "perf/images_per_s",
        "perf/peak_memory_mb",
        "val/step2/loss",
    ]:
        assert key in logged, key
    # the validation metrics on the first test pairs (train.val_metric_pairs=4 in the tiny world)
    val = [m for m in metrics if "val/idsim" in m]
    assert [m["step"] for m in val] == [2, 4, 6] and all(m["val/metric_pairs"] == 4 for m in val)
    assert all(m["val/lpips"] > 0 and -1 <= m["val/idsim"] <= 1 and m["val/fid"] > 0 for m in val)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["provenance"]["git_commit"]
    wandb_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1 and wandb_runs[0].name.endswith(summary["wandb_id"])
    assert list(wandb_runs[0].glob("*.wandb"))
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_4", "step_6"]  # keep_last 2
    assert list((run_dir / "media").glob("val_grid_*.png"))
    assert set(encoder_weights(run_dir)) >= {"latent_avg"}


def test_sigkill_then_resume_equals_uninterrupted(uninterrupted, tiny_nets, straight, tmp_path):
    tokens = tiny_overrides(tiny_nets, tmp_path, **straight)
    proc = subprocess.Popen(
        [sys.executable, RUN, *tokens], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=subprocess_env()
    )
    ckpt = tmp_path / uninterrupted.name / "checkpoints" / "step_2"
    deadline = time.time() + 600
    while not (ckpt / "trainer.json").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    # A crash takes the W&B service down with the trainer; a lone SIGKILL of the trainer would leave
    # its wandb-core (own session) holding the run id, and the resume would be refused as "in use".
    for pid in [*children_of(proc.pid), proc.pid]:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    run_dir = tmp_path / uninterrupted.name
    assert not (run_dir / "final").exists(), "the run finished before it was killed"
    first_id = json.loads((ckpt / "trainer.json").read_text())["wandb_id"]

    run_cli(tokens + ["resume=latest"])
    a, b = encoder_weights(uninterrupted), encoder_weights(run_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), k  # exact on the CPU
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["wandb_id"] == first_id
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [s for s, m in zip(steps, (run_dir / "metrics.jsonl").read_text().splitlines()) if "train/loss" in m]
    assert train_steps == sorted(set(train_steps)) == [1, 2, 3, 4, 5, 6]


def test_cadence_keys_leave_training_unchanged(uninterrupted, tiny_nets, straight, tmp_path):
    """The cadence keys are in provenance.NOT_TRAINING (a finished run is reused when only they differ): a run
    that validates, logs and checkpoints at other steps ends with exactly the same weights on the CPU."""
    from experiments.provenance import NOT_TRAINING

    cadence = {"train.val_every": 5, "train.log_every": 3, "train.ckpt_every": 4, "train.keep_last": 1}
    assert set(cadence) <= set(NOT_TRAINING)
    run_cli(tiny_overrides(tiny_nets, tmp_path, **{**straight, **cadence}))
    run_dir = only_run_dir(tmp_path)
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # validated at 5 and 6 (the uninterrupted run: 2, 4 and 6), with the generator noise drawn from the global RNG
    assert [m["step"] for m in lines if any(k.startswith("val/") for k in m)] == [5, 6]
    a, b = encoder_weights(uninterrupted), encoder_weights(run_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), k


@pytest.mark.multiproc
def test_two_processes_match_one_process_with_same_global_batch(tiny_nets, tmp_path):
    one = tmp_path / "one"
    two = tmp_path / "two"
    common = {"train.max_steps": 3, "train.batch_size": 4}
    run_cli(tiny_overrides(tiny_nets, one, **common, **{"train.grad_accum": 2}))
    launcher = two_process_launcher(29517)
    run_cli(tiny_overrides(tiny_nets, two, **common), env={"ACCELERATE_USE_CPU": "1"}, launcher=launcher)
    run_one, run_two = only_run_dir(one), only_run_dir(two)
    summary = json.loads((run_two / "summary.json").read_text())
    assert summary["processes"] == 2
    c0, c1 = summary["rank_weight_checksums"]
    assert c0 == c1  # both ranks end with identical weights
    assert len(list((run_two / "wandb").glob("offline-run-*"))) == 1
    lines = (run_two / "metrics.jsonl").read_text().splitlines()
    train_steps = [json.loads(x)["step"] for x in lines if "train/loss" in x]
    assert train_steps == [1, 2, 3]  # one run record, written once
    a, b = encoder_weights(run_one), encoder_weights(run_two)
    # BatchNorm's running statistics count forward passes (12 micro-batch passes per rank on one
    # process with accumulation, 6 on each of two), so only the learned tensors must agree.
    learned = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(learned) > 10
    diffs = torch.cat([(a[k] - b[k]).abs().flatten() for k in learned])
    # Summation order differs (all-reduce vs accumulation); Adam turns that float noise into up to
    # one lr-sized step for the few elements whose gradient is ~0, and into nothing for the rest.
    assert (diffs <= 1e-6).float().mean() >= 0.999, (diffs > 1e-6).sum()
    lr = OmegaConf.load(run_two / "config.yaml").train.lr  # the world's recipe: one Adam step is at most ~lr
    assert diffs.max() <= lr * common["train.max_steps"]


def test_cpu_threads_setting(monkeypatch):
    """train.cpu_threads: None keeps the launch's setting, 0 takes the cores per local process, N sets N."""
    import os
    from types import SimpleNamespace

    import torch

    from experiments.train import apply_cpu_threads

    before = torch.get_num_threads()
    cpu = SimpleNamespace(device=torch.device("cpu"), num_processes=1)
    try:
        apply_cpu_threads(None, cpu)
        assert torch.get_num_threads() == before
        cores = len(os.sched_getaffinity(0))
        apply_cpu_threads(cores + 1, cpu)  # a count that differs from both the start and the auto value
        assert torch.get_num_threads() == cores + 1
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
        apply_cpu_threads(0, cpu)
        assert torch.get_num_threads() == cores
        apply_cpu_threads(cores + 1, SimpleNamespace(device=torch.device("cuda"), num_processes=1))
        assert torch.get_num_threads() == cores  # GPU runs are left alone
    finally:
        torch.set_num_threads(before)
