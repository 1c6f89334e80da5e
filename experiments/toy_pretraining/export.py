"""What every shipped toy file goes through: fp16 state dicts, and the sha256s printed for the registry."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from models.weights import sha256_of


def fp16_state(module_or_state: nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict (of a module, or given) with floating tensors in fp16 (counters stay int64),
    contiguous for safetensors."""
    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}


def print_hashes(paths: dict[str, Path]) -> dict[str, str]:
    """Print and return {file name: sha256} for the registry (models/weights.py)."""
    hashes = {}
    for p in paths.values():
        hashes[p.name] = sha256_of(p)
        print(f"sha256 {hashes[p.name]}  {p}  ({p.stat().st_size} bytes)")
    return hashes
