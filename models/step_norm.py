"""BatchNorm with running statistics per refinement step (``model.step_norm_statistics``).

A ReStyle-type encoder sees another input at every refinement step: at the first, the contour beside the
average image (the same for every sample, so those channels have no batch variance at all), later beside the
last output. Training normalises each step by its own batch statistics, but BatchNorm keeps one running average,
a blend of all the steps', and in eval mode every step is normalised by that blend. Keeping the running
statistics per step gives each step in eval mode what it saw in training, and keeps inference per sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class StepBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose ``running_mean`` / ``running_var`` are (n_steps, C), one row per refinement step.

    ``step`` (0-based; :func:`set_norm_step`) picks the row a forward updates (train mode) or normalises with
    (eval mode); steps past the last use the last row. Input and output (B, C, H, W), as BatchNorm2d. The
    momentum must be a number (the cumulative average of ``momentum=None`` would need a count per row)."""

    def __init__(self, num_features: int, n_steps: int, eps: float = 1e-5, momentum: float = 0.1):
        if n_steps < 1 or momentum is None:
            raise ValueError(f"StepBatchNorm2d needs n_steps >= 1 and a momentum, got {n_steps}, {momentum}")
        super().__init__(num_features, eps, momentum)
        self.n_steps, self.step = n_steps, 0
        self.register_buffer("running_mean", torch.zeros(n_steps, num_features))
        self.register_buffer("running_var", torch.ones(n_steps, num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        t = min(self.step, self.n_steps - 1)
        if self.training:
            self.num_batches_tracked.add_(1)
        # rows of the contiguous buffers are views: batch_norm updates the step's row in place
        return F.batch_norm(
            x, self.running_mean[t], self.running_var[t], self.weight, self.bias, self.training, self.momentum, self.eps
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_steps={self.n_steps}"


def use_step_statistics(module: nn.Module, n_steps: int) -> list[StepBatchNorm2d]:
    """Replace every ``nn.BatchNorm2d`` inside ``module`` (in place) by a :class:`StepBatchNorm2d` with the same
    affine parameters and its running statistics copied into every step's row; returns the new layers."""
    converted = []
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                if not (child.affine and child.track_running_stats):
                    raise ValueError(f"{name}: per-step statistics need an affine BatchNorm2d that tracks statistics")
                new = StepBatchNorm2d(child.num_features, n_steps, child.eps, child.momentum).to(child.weight.device)
                with torch.no_grad():
                    new.weight.copy_(child.weight)
                    new.bias.copy_(child.bias)
                    new.running_mean.copy_(child.running_mean.expand(n_steps, -1))
                    new.running_var.copy_(child.running_var.expand(n_steps, -1))
                    new.num_batches_tracked.copy_(child.num_batches_tracked)
                new.train(child.training)
                setattr(parent, name, new)
                converted.append(new)
    return converted


def set_norm_step(norms: list[StepBatchNorm2d], step: int) -> None:
    """Point every layer of ``norms`` at refinement step ``step`` (0-based)."""
    for m in norms:
        m.step = step
