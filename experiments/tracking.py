"""Run records and W&B: what a run writes for people (W&B) and for code (files beside the run).

The local run record, written by the main process only, is what notebooks, reports and tests
read without a W&B server:

- ``<run dir>/config.yaml``: the resolved config;
- ``<run dir>/metrics.jsonl``: one JSON object per logged step (``{"step": n, "train/loss": ...}``);
- ``<run dir>/summary.json``: final values, provenance and the W&B run id/URL;
- ``<run dir>/media/``: image grids as PNG.

W&B goes through ``Accelerator(log_with="wandb")``: one run per launch, offline unless the user
chose otherwise (the ``WANDB_MODE`` environment variable wins over ``wandb.mode``).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.config import REPO_ROOT
from ops.atomic_write import atomic_write_text

TRACKED_PACKAGES = (
    "torch",
    "accelerate",
    "wandb",
    "lpips",
    "pytorch-fid",
    "insightface",
    "onnxruntime",
    "omegaconf",
    "numpy",
)


def wandb_mode(cfg_mode: str) -> str:
    """The W&B mode in force: ``WANDB_MODE`` if set, else the config's; exported for child code."""
    mode = os.environ.get("WANDB_MODE") or cfg_mode
    os.environ["WANDB_MODE"] = mode
    return mode


def provenance() -> dict[str, Any]:
    """Git commit, dirty flag and package versions of the code that runs."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    versions = {}
    for pkg in TRACKED_PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "packages": versions,
    }


def to_uint8_image(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] (or (1, H, W)) -> (H, W, 3) uint8; W&B no longer rescales floats itself."""
    x = x.detach().float().cpu()
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def image_grid(rows: list[list[torch.Tensor]], pad: int = 2) -> np.ndarray:
    """Tile ``rows`` (each a list of (C, H, W) images in [-1, 1], same H, W) -> (H', W', 3) uint8."""
    tiles = [[to_uint8_image(t) for t in row] for row in rows]
    h, w = tiles[0][0].shape[:2]
    n_cols = max(len(r) for r in tiles)
    grid = np.full((len(tiles) * (h + pad) + pad, n_cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(tiles):
        for j, t in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y : y + h, x : x + w] = t
    return grid


class RunRecord:
    """The local run record of one run directory (main process only writes)."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.summary_path = self.run_dir / "summary.json"
        self.media_dir = self.run_dir / "media"

    def start(self, config_yaml: str, resume_step: int = 0) -> None:
        """Write the config; on resume drop metric lines past the checkpoint (they will be redone)."""
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / "config.yaml", config_yaml)
        if self.metrics_path.exists():
            kept = [
                line
                for line in self.metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            atomic_write_text(self.metrics_path, "".join(line + "\n" for line in kept))

    def log(self, values: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps({"step": step, **_jsonable(values)}) + "\n")

    def save_image(self, name: str, image: np.ndarray, step: int) -> Path | None:
        if not self.enabled:
            return None
        from PIL import Image

        self.media_dir.mkdir(parents=True, exist_ok=True)
        path = self.media_dir / f"{name.replace('/', '_')}_{step:07d}.png"
        Image.fromarray(image).save(path)
        return path

    def update_summary(self, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        summary = self.read_summary(self.run_dir)
        summary.update(_jsonable(values))
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2, sort_keys=True))

    @staticmethod
    def read_summary(run_dir: Path) -> dict[str, Any]:
        path = Path(run_dir) / "summary.json"
        return json.loads(path.read_text()) if path.exists() else {}

    @staticmethod
    def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
        path = Path(run_dir) / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in values.items():
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().item() if v.numel() == 1 else v.detach().cpu().tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        elif isinstance(v, dict):
            v = _jsonable(v)
        out[k] = v
    return out


def wandb_run_info(accelerator) -> dict[str, Any]:
    """Id, URL and local folder of the W&B run behind ``accelerator`` (main process), or {}."""
    try:
        tracker = accelerator.get_tracker("wandb", unwrap=True)
    except (ValueError, AttributeError):
        return {}
    if tracker is None or not hasattr(tracker, "id"):
        return {}
    return {
        "wandb_id": tracker.id,
        "wandb_url": getattr(tracker, "url", None),
        "wandb_dir": getattr(tracker, "dir", None),
        "wandb_project": getattr(tracker, "project", None),
    }
