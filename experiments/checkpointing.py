"""Training checkpoints: complete-or-absent folders, keep-last-K, resume lookup.

Layout: ``<run dir>/checkpoints/step_<n>/`` holds ``accelerator.save_state`` output (every rank
writes its own RNG state) plus ``trainer.json`` (step, epoch, batches seen in the epoch, W&B id).
Each checkpoint is first written to ``step_<n>.partial`` and renamed by the main process after all
ranks have finished, so a crash mid-write never leaves a folder that looks complete: only
``step_<n>`` folders count, and stale ``.partial`` folders are removed by the next save.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

CHECKPOINT_RE = re.compile(r"^step_(\d+)$")


@dataclass
class TrainerState:
    """What the loop needs, besides the accelerator state, to continue exactly."""

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    wandb_id: str | None = None


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete checkpoints under ``ckpt_root``, oldest first."""
    if not ckpt_root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_root.iterdir()
             if p.is_dir() and (m := CHECKPOINT_RE.match(p.name)) and (p / "trainer.json").is_file()]
    return [p for _, p in sorted(found)]


def find_resume(resume: str | None, ckpt_root: Path) -> Path | None:
    """``None`` -> None; ``latest`` -> newest complete checkpoint (None if there is none yet);
    a path -> that checkpoint, which must be complete."""
    if not resume:
        return None
    if resume == "latest":
        ckpts = list_checkpoints(ckpt_root)
        return ckpts[-1] if ckpts else None
    path = Path(resume).expanduser()
    if not (path / "trainer.json").is_file():
        raise FileNotFoundError(
            f"resume={resume}: {path} is not a complete checkpoint (no trainer.json); complete ones: "
            f"{', '.join(str(p) for p in list_checkpoints(ckpt_root)) or 'none'}"
        )
    return path


def read_state(ckpt: Path) -> TrainerState:
    return TrainerState(**json.loads((ckpt / "trainer.json").read_text()))


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
        for old in list_checkpoints(ckpt_root)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final
