"""fused_leaky_relu: reference vs the formula, gradients to second order, module, CUDA vs reference."""

import pytest
import torch

import ops
from ops import FusedLeakyReLU, fused_leaky_relu, fused_leaky_relu_ref


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5, 4), (2, 3, 4, 2, 2)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_reference_matches_formula(shape, with_bias):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64) if with_bias else None
    v = x + bias.view(1, 3, *[1] * (x.ndim - 2)) if with_bias else x
    expected = torch.where(v > 0, v, 0.1 * v) * 1.5
    torch.testing.assert_close(fused_leaky_relu(x, bias, negative_slope=0.1, scale=1.5), expected)
    default = torch.where(v > 0, v, 0.2 * v) * 2**0.5
    torch.testing.assert_close(fused_leaky_relu(x, bias), default)


def test_reference_gradcheck_and_gradgradcheck():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fused_leaky_relu_ref, (x, bias))
    assert torch.autograd.gradgradcheck(fused_leaky_relu_ref, (x, bias))


def test_module_parameters_and_dtype_promotion():
    act = FusedLeakyReLU(5)
    assert act.bias.shape == (5,) and act.bias.abs().sum() == 0
    assert FusedLeakyReLU(5, bias=False).bias is None and len(list(FusedLeakyReLU(5, bias=False).parameters())) == 0
    x = torch.randn(2, 5, 3, 3)
    torch.testing.assert_close(act(x), fused_leaky_relu_ref(x, torch.zeros(5)))
    assert fused_leaky_relu(x.bfloat16(), torch.zeros(5)).dtype == torch.float32  # as x + bias promotes


@pytest.mark.cuda
@pytest.mark.parametrize("shape", [(6, 7), (3, 7, 9, 5)])
def test_cuda_matches_reference_to_second_order(shape, monkeypatch):
    monkeypatch.setattr(ops.plugin, "_impl", "cuda")
    torch.manual_seed(2)
    x = torch.randn(*shape, device="cuda", requires_grad=True)
    bias = torch.randn(7, device="cuda", requires_grad=True)
    out, ref = fused_leaky_relu(x, bias), fused_leaky_relu_ref(x, bias)
    g = torch.randn_like(ref, requires_grad=True)
    gx, gb = torch.autograd.grad(out, (x, bias), g, create_graph=True)
    gx_ref, gb_ref = torch.autograd.grad(ref, (x, bias), g, create_graph=True)
    gg = torch.randn_like(gx)
    (h,) = torch.autograd.grad(gx, g, gg)
    (h_ref,) = torch.autograd.grad(gx_ref, g, gg)
    for a, b in [(out, ref), (gx, gx_ref), (gb, gb_ref), (h, h_ref)]:
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)
    small = torch.randn(2, 7, 3, dtype=torch.float64, device="cuda", requires_grad=True)
    b64 = bias.detach().double().requires_grad_()
    assert torch.autograd.gradcheck(fused_leaky_relu, (small, b64))
    assert torch.autograd.gradgradcheck(fused_leaky_relu, (small, b64))
    y = fused_leaky_relu(x.detach().bfloat16(), None)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), fused_leaky_relu_ref(x.detach(), None), atol=3e-2, rtol=3e-2)
