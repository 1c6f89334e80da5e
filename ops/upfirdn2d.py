"""upfirdn2d: zero-insertion upsampling, padding, 2-D FIR filtering, decimation (rosinality semantics).

For each plane of ``x`` (B, C, H, W):
  1. upsample by ``up``: insert ``up - 1`` zeros after every sample (length H*up),
  2. pad ``pad0`` zeros before and ``pad1`` after on both axes (negative values crop),
  3. convolve (true convolution, i.e. correlation with the flipped kernel) with ``kernel``,
     keeping only the "valid" positions,
  4. keep every ``down``-th sample.
Output: (B, C, (H*up + pad0 + pad1 - kh) // down + 1, (W*up + pad0 + pad1 - kw) // down + 1).

Reference: :func:`upfirdn2d_ref` (plain PyTorch ops, autograd to any order). CUDA: one direct kernel
(ops/cuda/upfirdn2d.cu) that visits only the taps that land on non-inserted samples. Its gradient is
the same op with the kernel flipped, ``up``/``down`` swapped and adjusted pads, itself
differentiable, so double backward (R1) works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ops.plugin import plugin_for


def _pad4(pad) -> tuple[int, int, int, int]:
    """(pad0, pad1) for both axes, or (x0, x1, y0, y1)."""
    pad = tuple(int(p) for p in pad)
    return pad * 2 if len(pad) == 2 else pad


def upfirdn2d_ref(x, kernel, up=1, down=1, pad=(0, 0)):
    """Reference: x (B, C, H, W), kernel (kh, kw) -> (B, C, H', W') as in the module docstring."""
    px0, px1, py0, py1 = _pad4(pad)
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    x = x.reshape(b, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(b, c, h * up, w * up)
    x = F.pad(x, [px0, px1, py0, py1])  # constant_pad_nd crops on negative pads
    # One depthwise conv (groups = C): the same taps, in the same order, as a single-channel conv over
    # (B*C, 1, H, W) planes, whose mkldnn backward is 10-80x slower on a CPU (upfirdn2d_ref is the CPU path).
    weight = kernel.flip([0, 1]).to(x.dtype).reshape(1, 1, kh, kw).expand(c, 1, kh, kw)
    return F.conv2d(x, weight, stride=down, groups=c)


def _grad_pad(kernel_hw, in_hw, out_hw, up, down, pad):
    """Pads that make upfirdn2d(grad, flipped kernel, up=down, down=up) the adjoint of the forward."""
    (kh, kw), (h, w), (oh, ow) = kernel_hw, in_hw, out_hw
    px0, _, py0, _ = pad
    return (kw - 1 - px0, w * up - ow * down + px0 - up + 1, kh - 1 - py0, h * up - oh * down + py0 - up + 1)


class _UpFirDn2dCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel, up, down, pad):
        b, c, h, w = x.shape
        out = plugin_for(x).upfirdn2d(x.reshape(b * c, h, w).contiguous(), kernel, up, down, *pad)
        ctx.save_for_backward(kernel)
        ctx.conf = (up, down, pad, (h, w))
        return out.view(b, c, out.shape[1], out.shape[2])

    @staticmethod
    def backward(ctx, grad):
        (kernel,) = ctx.saved_tensors
        up, down, pad, in_hw = ctx.conf
        gpad = _grad_pad(kernel.shape, in_hw, grad.shape[2:], up, down, pad)
        grad_x = _UpFirDn2dCuda.apply(grad, kernel.flip([0, 1]).contiguous(), down, up, gpad)
        return grad_x, None, None, None, None


def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """x (B, C, H, W) float, kernel (kh, kw) (a fixed filter: no gradient flows to it on the CUDA
    path), integer ``up``/``down`` >= 1, ``pad`` = (pad0, pad1) on both axes or (x0, x1, y0, y1)
    -> (B, C, H', W')."""
    pad = _pad4(pad)
    if plugin_for(x) is None:
        return upfirdn2d_ref(x, kernel, up, down, pad)
    return _UpFirDn2dCuda.apply(x, kernel.to(x.dtype).contiguous(), int(up), int(down), pad)
