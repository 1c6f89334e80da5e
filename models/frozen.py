"""Frozen networks: the pretrained judges and feature trunks that losses and metrics use but never train."""

from __future__ import annotations

from torch import nn


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` on every parameter; returns the module."""
    return module.eval().requires_grad_(False)
