"""StyleGAN2's building blocks, shared by the generator and the discriminator (``models.stylegan2``), with
rosinality's parameter layout: the {resolution: channels} table, equalised-lr conv and linear layers, the
blur / upsampling filters and the style-modulated conv with its factored backward for a frozen weight.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ops import fused_leaky_relu, upfirdn2d


def default_channels(channel_multiplier: int = 2) -> dict[int, int]:
    """rosinality's {resolution: channels} table."""
    cm = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}


def channel_table(channel_multiplier, channels) -> dict[int, int]:
    """rosinality's table with ``channels`` ({resolution: channels}, e.g. the toy world's) overriding it."""
    table = default_channels(channel_multiplier)
    table.update({int(r): int(c) for r, c in (channels or {}).items()})
    return table


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def make_kernel(k) -> torch.Tensor:
    """1-D taps -> separable 2-D (kh, kw) kernel normalised to sum 1."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


class Upsample(nn.Module):
    """2x (``factor``) upsampling with the blur kernel: (B, C, H, W) -> (B, C, fH, fW)."""

    def __init__(self, kernel, factor=2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class Blur(nn.Module):
    def __init__(self, kernel, pad, upsample_factor=1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor**2)
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate: weight ~ N(0, 1) scaled by 1/sqrt(fan_in) at run time."""

    def __init__(self, in_channel, out_channel, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear with equalised learning rate and learning-rate multiplier; optional fused lrelu."""

    def __init__(self, in_dim, out_dim, bias=True, bias_init=0, lr_mul=1, activation=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x):
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)


def modulated_conv(x, s, w0, demodulate: bool, upsample: bool, stride: int, padding: int):
    """rosinality's fused modulated conv: per-sample weights w0 * s (demodulated) through one grouped conv.

    x (B, I, H, W); s (B, I) the styles' input-channel scales; w0 (1, O, I, k, k) the scaled weight.
    -> ((B, O, H', W'), demod (B, O) or None): a transposed conv of stride 2 when ``upsample``, else a
    conv of ``stride`` and ``padding``."""
    b, c, h, w = x.shape
    o, k = w0.shape[1], w0.shape[-1]
    weight = w0 * s.view(b, 1, c, 1, 1)
    demod = None
    if demodulate:
        demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
        weight = weight * demod.view(b, o, 1, 1, 1)
    if upsample:
        weight = weight.transpose(1, 2).reshape(b * c, o, k, k)
        out = F.conv_transpose2d(x.reshape(1, b * c, h, w), weight, stride=2, groups=b)
    else:
        out = F.conv2d(
            x.reshape(1, b * c, h, w), weight.reshape(b * o, c, k, k), stride=stride, padding=padding, groups=b
        )
    return out.view(b, o, out.shape[2], out.shape[3]), demod


class _FrozenModulatedConv(torch.autograd.Function):
    """:func:`modulated_conv` (the same forward, bit for bit) with a backward for a frozen w0.

    Autograd of the fused conv computes the gradient of every sample's modulated weight (a weight-gradient
    conv as costly as the forward) only to contract it with w0 for the styles. With w0 fixed the same
    gradients follow from one input-gradient conv through the shared w0: with out = d * conv(x * s, w0)
    and g_t = conv_input_grad(grad * d, w0), dL/dx = s * g_t and dL/ds = sum_hw x * g_t, minus through
    the demodulation d = rsqrt(sum_{k} w0^2 s^2): (sum_hw grad * out / d) * d^3 * s * sum_{k} w0^2. Equal to
    autograd's up to rounding; the toy generator's fwd+bwd runs ~1.5x faster on a CPU.
    """

    @staticmethod
    def forward(ctx, x, s, w0, demodulate: bool, upsample: bool, stride: int, padding: int):
        out, demod = modulated_conv(x, s, w0, demodulate, upsample, stride, padding)
        ctx.save_for_backward(x, s, w0, demod, out)
        ctx.conv = (upsample, stride, padding)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, s, w0, demod, out = ctx.saved_tensors
        upsample, stride, padding = ctx.conv
        dtype, w = grad.dtype, w0[0].to(grad.dtype)  # (O, I, k, k); under autocast the grads may be bf16
        scaled = grad if demod is None else grad * demod.to(dtype)[:, :, None, None]
        if upsample:  # the adjoint of a transposed conv is the conv with the same weight
            g_t = F.conv2d(scaled, w.transpose(0, 1), stride=2)
        else:
            g_t = torch.nn.grad.conv2d_input(x.shape, w, scaled, stride=stride, padding=padding)
        grad_x = (g_t * s.to(dtype)[:, :, None, None]).to(x.dtype)
        acc = torch.promote_types(dtype, torch.float32)  # the style gradient sums over pixels: not in bf16
        grad_s = (g_t.to(acc) * x.to(acc)).sum((2, 3))
        if demod is not None:
            d = demod.to(acc)
            grad_d = (grad.to(acc) * out.to(acc)).sum((2, 3)) / d
            grad_s = grad_s - ((grad_d * d.pow(3)) @ w0[0].to(acc).pow(2).sum((2, 3))) * s.to(acc)
        return grad_x, grad_s.to(s.dtype), None, None, None, None, None


class ModulatedConv2d(nn.Module):
    """Style-modulated (and optionally demodulated) conv, per-sample weights via a grouped conv.

    forward(x (B, in, H, W), style (B, style_dim)) -> (B, out, H', W') with H' = 2H when upsampling
    (transposed conv stride 2, then blur), H/2 when downsampling (blur, then conv stride 2), else H.
    With the weight frozen (``requires_grad`` off, as the pretrained generator is) and
    ``factored_backward`` on, gradients to x and the style take :class:`_FrozenModulatedConv`'s cheaper
    backward; the forward is the same computation either way.
    """

    factored_backward = True

    def __init__(
        self,
        in_channel,
        out_channel,
        kernel_size,
        style_dim,
        demodulate=True,
        upsample=False,
        downsample=False,
        blur_kernel=(1, 3, 3, 1),
    ):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample, self.downsample, self.demodulate = upsample, downsample, demodulate
        factor = 2
        if upsample:
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        if downsample:
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def forward(self, x, style):
        s, w0 = self.modulation(style), self.scale * self.weight
        if self.downsample:
            x = self.blur(x)
        conv = (self.demodulate, self.upsample, 2 if self.downsample else 1, 0 if self.downsample else self.padding)
        if self.factored_backward and not w0.requires_grad and torch.is_grad_enabled():
            out = _FrozenModulatedConv.apply(x, s, w0, *conv)
        else:
            out, _ = modulated_conv(x, s, w0, *conv)
        return self.blur(out) if self.upsample else out
