"""Fused bias + leaky-ReLU + gain: ``lrelu(x + bias, slope) * scale`` (StyleGAN2's activation).

Reference: :func:`fused_leaky_relu_ref` (plain PyTorch, any device, autograd to any order). CUDA: one
elementwise kernel (ops/cuda/bias_act.cu) used for the forward, the backward and the double backward
(the op is piecewise linear, so every derivative is the incoming gradient times the forward's slope
mask, read from the forward output's sign).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ops.plugin import plugin_for

SQRT2 = 2**0.5


def _bias_view(bias: torch.Tensor, ndim: int) -> torch.Tensor:
    return bias.view(1, -1, *([1] * (ndim - 2)))


def fused_leaky_relu_ref(x, bias=None, negative_slope=0.2, scale=SQRT2):
    """Reference: x (B, C, ...) any range, bias (C,) or None -> same shape as x."""
    if bias is not None:
        x = x + _bias_view(bias, x.ndim)
    return F.leaky_relu(x, negative_slope) * scale


class _BiasActCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bias, negative_slope, scale):
        empty = x.new_empty(0)
        out = plugin_for(x).bias_lrelu(x, empty if bias is None else bias, empty, negative_slope, scale)
        ctx.save_for_backward(out)
        ctx.conf = (negative_slope, scale, bias is not None)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        negative_slope, scale, has_bias = ctx.conf
        grad_x = _SlopeMaskCuda.apply(grad, out, negative_slope, scale)
        grad_bias = None
        if has_bias and ctx.needs_input_grad[1]:
            grad_bias = grad_x.sum([d for d in range(grad_x.ndim) if d != 1])
        return grad_x, grad_bias, None, None


class _SlopeMaskCuda(torch.autograd.Function):
    """grad * (scale where out > 0 else scale * slope); linear in grad, zero derivative in out."""

    @staticmethod
    def forward(ctx, grad, out, negative_slope, scale):
        ctx.save_for_backward(out)
        ctx.conf = (negative_slope, scale)
        return plugin_for(grad).bias_lrelu(
            grad.contiguous(), grad.new_empty(0), out.to(grad.dtype), negative_slope, scale
        )

    @staticmethod
    def backward(ctx, grad_grad):
        (out,) = ctx.saved_tensors
        return _SlopeMaskCuda.apply(grad_grad, out, *ctx.conf), None, None, None


def fused_leaky_relu(x, bias=None, negative_slope=0.2, scale=SQRT2):
    """``lrelu(x + bias[broadcast over dim 1], negative_slope) * scale``.

    x: (B, C, ...) any float dtype; bias: (C,) or None. Returns the dtype PyTorch's type promotion
    gives ``x + bias`` (so bf16 activations with an fp32 bias come back fp32, as in the reference).
    """
    if plugin_for(x) is None:
        return fused_leaky_relu_ref(x, bias, negative_slope, scale)
    dtype = x.dtype if bias is None else torch.result_type(x, bias)
    x = x.to(dtype).contiguous()
    bias = None if bias is None else bias.to(dtype).contiguous()
    return _BiasActCuda.apply(x, bias, float(negative_slope), float(scale))


class FusedLeakyReLU(nn.Module):
    """Learned per-channel bias (``bias`` (C,), zero-initialised) then scaled leaky ReLU."""

    def __init__(self, channel: int, bias: bool = True, negative_slope: float = 0.2, scale: float = SQRT2):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x):
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)
