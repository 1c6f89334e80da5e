"""The floor every package builds on: StyleGAN2's custom ops with pure-PyTorch references and a lazily built
CUDA plugin (ops/plugin.py), image resizing with named kernels (ops.resize), shape contracts at public
forwards (ops.shapes) and atomic file writes (ops.atomic_write); the last three are imported by name."""

from ops.bias_act import FusedLeakyReLU, fused_leaky_relu, fused_leaky_relu_ref
from ops.plugin import get_impl, set_impl
from ops.upfirdn2d import upfirdn2d, upfirdn2d_ref

__all__ = [
    "FusedLeakyReLU",
    "fused_leaky_relu",
    "fused_leaky_relu_ref",
    "upfirdn2d",
    "upfirdn2d_ref",
    "get_impl",
    "set_impl",
]
