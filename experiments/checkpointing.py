"""Training checkpoints: complete-or-absent folders, keep-last-K, resume lookup.

Layout: ``<run dir>/checkpoints/step_<n>/`` holds ``accelerator.save_state`` output (every rank
writes its own RNG state) plus ``trainer.json`` (step, epoch, batches seen in the epoch, W&B id).
Each checkpoint is first written to ``step_<n>.partial`` and renamed by the main process after all
ranks have finished, so a crash mid-write never leaves a folder that looks complete: only
``step_<n>`` folders count, and stale ``.partial`` folders are removed by the next save.

A resume is exact or fails: :func:`restore_checkpoint` reads every piece of saved state through the safe
readers first (an unreadable or unsafe piece is a :class:`ResumeError` naming it), loads them, and then
checks that the model weights, the optimiser's step counts and every random generator hold what was
saved. ``trainer.json`` records the run's id; keep-last deletes only checkpoints of the current run.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

CHECKPOINT_RE = re.compile(r"^step_(\d+)$")
# resume values besides a checkpoint folder: the newest checkpoint (an error when there is none), or the
# newest if there is one and else a fresh start (what reproduce.py uses for runs it may have begun)
RESUME_LATEST, RESUME_AUTO = "latest", "auto"


class ResumeError(RuntimeError):
    """A resume that cannot continue exactly; ``str(err)`` names the checkpoint piece and what to do."""


@dataclass
class TrainerState:
    """What the loop needs, besides the accelerator state, to continue exactly."""

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    wandb_id: str | None = None
    run_id: str | None = None  # the run that wrote the checkpoint (None: written before runs had ids)


def list_checkpoints(ckpt_root: Path, run_id: str | None | bool = False) -> list[Path]:
    """Complete checkpoints under ``ckpt_root``, oldest first; with ``run_id`` (a str or None), only those
    that run wrote."""
    if not ckpt_root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in ckpt_root.iterdir()
        if p.is_dir() and (m := CHECKPOINT_RE.match(p.name)) and (p / "trainer.json").is_file()
    ]
    ckpts = [p for _, p in sorted(found)]
    return ckpts if run_id is False else [p for p in ckpts if read_state(p).run_id == run_id]


def find_resume(resume: str | None, ckpt_root: Path) -> Path | None:
    """``None`` -> None; ``latest`` -> the newest complete checkpoint (:class:`ResumeError` when there is
    none); ``auto`` -> the newest, or None when there is none; a path -> that checkpoint, which must be
    complete."""
    if not resume:
        return None
    if resume in (RESUME_LATEST, RESUME_AUTO):
        ckpts = list_checkpoints(ckpt_root)
        if not ckpts and resume == RESUME_LATEST:
            raise ResumeError(
                f"resume=latest: no complete checkpoint in {ckpt_root} to resume; pass "
                f"resume=auto to start afresh when there is none, or leave resume unset"
            )
        return ckpts[-1] if ckpts else None
    path = Path(resume).expanduser()
    if not (path / "trainer.json").is_file():
        raise ResumeError(
            f"resume={resume}: {path} is not a complete checkpoint (no trainer.json); complete ones: "
            f"{', '.join(str(p) for p in list_checkpoints(ckpt_root)) or 'none'}"
        )
    return path


def read_state(ckpt: Path) -> TrainerState:
    path = ckpt / "trainer.json"
    try:
        return TrainerState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as err:  # truncated JSON, unknown keys
        raise ResumeError(
            f"{path}: unreadable trainer state ({type(err).__name__}: {err}); resume from "
            "another checkpoint (resume=<folder>)"
        ) from None


# What each file accelerate's save_state writes holds, for the messages.
PIECES = {
    "model": "the model weights",
    "optimizer": "the optimiser state",
    "scheduler": "the lr scheduler state",
    "sampler": "the data sampler state",
    "scaler": "the mixed-precision scaler state",
    "random_states": "the random generator states",
}


def _piece(path: Path) -> str:
    return next((what for stem, what in PIECES.items() if path.name.startswith(stem)), "a state file")


def _read_pieces(ckpt: Path, process_index: int) -> dict[str, object]:
    """Every state file of ``ckpt`` this process loads, read by the safe readers; {file name: contents}."""
    from accelerate.utils.other import TORCH_SAFE_GLOBALS

    from models.weights import load_state_file

    wanted = [
        p
        for p in sorted(ckpt.iterdir())
        if p.is_file()
        and p.suffix in (".safetensors", ".bin", ".pt", ".pkl")
        and not (p.name.startswith("random_states_") and p.name != f"random_states_{process_index}.pkl")
    ]
    if not (ckpt / f"random_states_{process_index}.pkl").is_file():
        raise ResumeError(
            f"{ckpt}: no random_states_{process_index}.pkl ({PIECES['random_states']} of process "
            f"{process_index}); it was saved by fewer processes, or damaged: resume with as many "
            "processes as saved it, or from another checkpoint"
        )
    out = {}
    for path in wanted:
        try:
            with torch.serialization.safe_globals(TORCH_SAFE_GLOBALS):
                out[path.name] = load_state_file(path)
        except Exception as err:  # the readers' own one-line errors, and whatever a damaged pickle raises
            detail = " ".join(str(err).split())
            raise ResumeError(
                f"cannot resume from {ckpt}: {_piece(path)} ({path.name}) is unreadable: {detail}; "
                "resume from another checkpoint (resume=<folder>)"
            ) from None
    return out


def restore_checkpoint(accelerator, ckpt: Path, model: torch.nn.Module, optimizer) -> None:
    """``accelerator.load_state(ckpt)``, exact or a :class:`ResumeError`: every piece is read safely first,
    and after loading the model weights, the optimiser's steps and every RNG are checked against them."""
    pieces = _read_pieces(ckpt, accelerator.process_index)
    try:
        accelerator.load_state(str(ckpt))
    except (RuntimeError, ValueError, KeyError) as err:  # the pieces do not fit this run's model/optimiser
        raise ResumeError(
            f"cannot resume from {ckpt}: its state does not fit this run "
            f"({' '.join(str(err).split())[:300]}); resume with the config it was saved with"
        ) from None
    failed = []
    rng = pieces[f"random_states_{accelerator.process_index}.pkl"]
    if not torch.equal(torch.get_rng_state(), rng["torch_manual_seed"]):
        failed.append("torch RNG")
    if random.getstate() != rng["random_state"]:
        failed.append("python RNG")
    saved_np, current_np = rng["numpy_random_seed"], np.random.get_state()
    if not all(np.array_equal(a, b) for a, b in zip(saved_np, current_np)):
        failed.append("numpy RNG")
    if torch.cuda.is_available() and "torch_cuda_manual_seed" in rng:
        if not all(torch.equal(a, b) for a, b in zip(torch.cuda.get_rng_state_all(), rng["torch_cuda_manual_seed"])):
            failed.append("CUDA RNG")
    weights = pieces.get("model.safetensors")
    if weights is not None:
        current = accelerator.unwrap_model(model).state_dict()
        if any(k not in current or not torch.equal(current[k].cpu(), v) for k, v in weights.items()):
            failed.append("model weights")
    saved_opt = pieces.get("optimizer.bin")
    if saved_opt is not None:
        steps = [float(s.get("step", 0)) for _, s in sorted(optimizer.state_dict()["state"].items())]
        if steps != [float(s.get("step", 0)) for _, s in sorted(saved_opt["state"].items())]:
            failed.append("optimiser steps")
    if failed:
        raise ResumeError(
            f"resume from {ckpt} is not exact: {', '.join(failed)} differ from the saved state "
            "after loading; resume from another checkpoint"
        )


def save_checkpoint(accelerator, ckpt_root: Path, state: TrainerState, keep_last: int) -> Path:
    """Save the accelerator state on every rank, then publish it atomically (collective call)."""
    final = ckpt_root / f"step_{state.step}"
    partial = ckpt_root / f"step_{state.step}.partial"
    if accelerator.is_main_process:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        for stale in ckpt_root.glob("*.partial"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (partial / "trainer.json").write_text(json.dumps(asdict(state)))
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
        for old in list_checkpoints(ckpt_root, state.run_id)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final
