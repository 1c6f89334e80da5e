"""What every toy pretraining run shares: the per-step RNG, the learning-rate schedule, atomic
checkpoints and the W&B run."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from models.weights import load_torch_file
from ops.atomic_write import atomic_path


def step_generator(seed: int, step: int) -> torch.Generator:
    """The RNG of one training step: a pure function of (seed, step), so resumed runs replay exactly."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def cosine_lr(step: int, steps: int, base: float, warmup: int = 50) -> float:
    """Linear warm-up over min(warmup, steps // 10) steps, then cosine decay to 0 at ``steps``."""
    warmup = max(1, min(warmup, steps // 10))
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))


def save_atomic(obj, path: Path) -> None:
    """``torch.save(obj, path)``, atomically (a crash leaves the previous file)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path) -> dict | None:
    return load_torch_file(path) if path.exists() else None


def start_wandb(name: str, config: dict, work_dir: Path):
    """An offline-by-default W&B run (``WANDB_MODE=disabled`` skips it)."""
    import wandb

    return wandb.init(
        project="ideface-toy-pretrain",
        name=name,
        config=config,
        dir=str(work_dir),
        mode=os.environ.get("WANDB_MODE", "offline"),
        reinit="finish_previous",
    )
