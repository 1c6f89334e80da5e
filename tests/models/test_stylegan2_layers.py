"""StyleGAN2's layers: the modulated conv's grouped batching and its factored backward for a frozen weight."""

import pytest
import torch
import torch.nn.functional as F

from models.stylegan2_layers import ModulatedConv2d, make_kernel
from ops import upfirdn2d


def test_modulated_convs_match_per_sample_formulation():
    """The grouped-conv batching equals modulating, demodulating and convolving each sample alone."""
    torch.manual_seed(2)
    for up in (True, False):
        conv = ModulatedConv2d(6, 5, 3, 16, upsample=up)
        x = torch.randn(3, conv.in_channel, 8, 8)
        style = torch.randn(3, 16)
        with torch.no_grad():
            out = conv(x, style)
            for b in range(3):
                s = conv.modulation(style[b : b + 1])[0]
                w = conv.scale * conv.weight[0] * s.view(1, -1, 1, 1)
                w = w / w.square().sum((1, 2, 3), keepdim=True).add(1e-8).sqrt()
                if up:
                    ref = F.conv_transpose2d(x[b : b + 1], w.transpose(0, 1), stride=2)
                    ref = upfirdn2d(ref, make_kernel([1, 3, 3, 1]) * 4, pad=(1, 1))
                else:
                    ref = F.conv2d(x[b : b + 1], w, padding=1)
                torch.testing.assert_close(out[b : b + 1], ref, rtol=1e-4, atol=1e-5)
        assert out.shape[-1] == (16 if up else 8)


@pytest.mark.parametrize("kind", ["conv", "upsample", "downsample", "to_rgb"])
def test_frozen_modulated_conv_backward_is_autograds(kind):
    """With the weight frozen, the factored backward gives autograd's gradients (float64, to rounding)
    and the forward is the same computation, bit for bit."""
    torch.manual_seed(3)
    conv = ModulatedConv2d(
        4,
        5,
        1 if kind == "to_rgb" else 3,
        6,
        demodulate=kind != "to_rgb",
        upsample=kind == "upsample",
        downsample=kind == "downsample",
    ).double()
    conv.requires_grad_(False)
    x = torch.randn(3, 4, 8, 8, dtype=torch.double, requires_grad=True)
    style = torch.randn(3, 6, dtype=torch.double, requires_grad=True)
    results = []
    for factored in (False, True):
        conv.factored_backward = factored
        out = conv(x, style)
        results.append((out, *torch.autograd.grad(out, (x, style), out.detach().sin())))
    (out, gx, gs), (out_f, gx_f, gs_f) = results
    assert torch.equal(out_f, out)
    torch.testing.assert_close(gx_f, gx, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gs_f, gs, rtol=1e-10, atol=1e-12)
