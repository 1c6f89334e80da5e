"""upfirdn2d: reference vs a direct formulation, gradients to second order, the CUDA plugin vs reference."""

import pytest
import torch

import ops
from models.stylegan2_layers import Blur, Upsample, make_kernel
from ops.upfirdn2d import _grad_pad, upfirdn2d_ref

# (up, down, pad (x0, x1, y0, y1), kernel shape): StyleGAN2's uses and awkward ones (crops, odd sizes)
CASES = [
    (2, 1, (2, 1, 2, 1), (4, 4)),  # Upsample
    (1, 2, (1, 1, 1, 1), (4, 4)),  # Downsample
    (1, 1, (1, 1, 1, 1), (4, 4)),  # Blur after the transposed conv
    (1, 1, (2, 2, 2, 2), (4, 4)),  # Blur before a strided conv
    (3, 2, (0, -1, 1, 2), (3, 5)),
    (1, 3, (-1, 2, 0, 0), (2, 3)),
]


def direct(x, kernel, up, down, pad):
    """Zero insertion by explicit indexing, padding/cropping by slicing, a tap-by-tap true convolution."""
    px0, px1, py0, py1 = pad
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    u = x.new_zeros(b, c, h * up, w * up)
    u[:, :, ::up, ::up] = x
    p = x.new_zeros(b, c, h * up + max(py0, 0) + max(py1, 0), w * up + max(px0, 0) + max(px1, 0))
    p[:, :, max(py0, 0) : max(py0, 0) + h * up, max(px0, 0) : max(px0, 0) + w * up] = u
    p = p[:, :, max(-py0, 0) : p.shape[2] - max(-py1, 0), max(-px0, 0) : p.shape[3] - max(-px1, 0)]
    oh, ow = p.shape[2] - kh + 1, p.shape[3] - kw + 1
    out = x.new_zeros(b, c, oh, ow)
    for j in range(kh):
        for i in range(kw):  # out[y, x] = sum p[y + j, x + i] * k[kh - 1 - j, kw - 1 - i]
            out += p[:, :, j : j + oh, i : i + ow] * kernel[kh - 1 - j, kw - 1 - i]
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize("up, down, pad, kshape", CASES)
def test_reference_matches_direct_formulation(up, down, pad, kshape):
    torch.manual_seed(0)
    x, k = torch.randn(2, 3, 7, 6, dtype=torch.float64), torch.randn(*kshape, dtype=torch.float64)
    out = upfirdn2d_ref(x, k, up, down, pad)
    expected = direct(x, k, up, down, pad)
    assert out.shape == expected.shape
    assert out.shape[2:] == (
        (7 * up + pad[2] + pad[3] - kshape[0]) // down + 1,
        (6 * up + pad[0] + pad[1] - kshape[1]) // down + 1,
    )
    torch.testing.assert_close(out, expected)


def test_public_op_symmetric_pad_and_stylegan_resampling():
    torch.manual_seed(1)
    x, k = torch.randn(1, 2, 5, 5), make_kernel([1, 3, 3, 1])
    torch.testing.assert_close(ops.upfirdn2d(x, k * 4, up=2, pad=(2, 1)), direct(x, k * 4, 2, 1, (2, 1, 2, 1)))
    torch.testing.assert_close(ops.upfirdn2d(x, k, pad=(2, 1, 0, 1)), direct(x, k, 1, 1, (2, 1, 0, 1)))
    ones = torch.ones(1, 1, 8, 8)
    up = Upsample([1, 3, 3, 1])(ones)
    assert up.shape == (1, 1, 16, 16)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))  # a constant stays constant
    down = ops.upfirdn2d(ones, k, down=2, pad=(1, 1))
    assert down.shape == (1, 1, 4, 4) and torch.allclose(down[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2))
    assert Blur([1, 3, 3, 1], pad=(1, 1))(ones).shape == (1, 1, 7, 7)


@pytest.mark.parametrize("up, down, pad, kshape", CASES[:2] + CASES[4:])
def test_reference_gradcheck_and_gradgradcheck(up, down, pad, kshape):
    torch.manual_seed(2)
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    k = torch.randn(*kshape, dtype=torch.float64)
    fn = lambda t: upfirdn2d_ref(t, k, up, down, pad)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("up, down, pad, kshape", CASES)
def test_adjoint_formula_used_by_cuda_backward(up, down, pad, kshape):
    """The CUDA backward is upfirdn2d(grad, flipped kernel, up=down, down=up, _grad_pad): check that it
    is the exact vector-Jacobian product of the forward, using the reference op on the CPU."""
    torch.manual_seed(3)
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    k = torch.randn(*kshape, dtype=torch.float64)
    out = upfirdn2d_ref(x, k, up, down, pad)
    g = torch.randn_like(out)
    (vjp,) = torch.autograd.grad(out, x, g)
    gpad = _grad_pad(k.shape, x.shape[2:], out.shape[2:], up, down, pad)
    torch.testing.assert_close(upfirdn2d_ref(g, k.flip([0, 1]), down, up, gpad), vjp)


def test_bf16_autocast_reference_runs():
    x = torch.randn(1, 2, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ops.upfirdn2d(x, make_kernel([1, 3, 3, 1]), down=2, pad=(1, 1))
    torch.testing.assert_close(
        out.float(), upfirdn2d_ref(x, make_kernel([1, 3, 3, 1]), 1, 2, (1, 1)), atol=2e-2, rtol=2e-2
    )


@pytest.mark.cuda
@pytest.mark.parametrize("up, down, pad, kshape", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_reference_to_second_order(up, down, pad, kshape, dtype, monkeypatch):
    monkeypatch.setattr(ops.plugin, "_impl", "cuda")
    torch.manual_seed(4)
    x = torch.randn(3, 5, 13, 11, device="cuda", dtype=dtype, requires_grad=True)
    k = torch.randn(*kshape, device="cuda", dtype=dtype)
    out, ref = ops.upfirdn2d(x, k, up, down, pad), upfirdn2d_ref(x, k, up, down, pad)
    g = torch.randn_like(ref, requires_grad=True)
    (gx,) = torch.autograd.grad(out, x, g, create_graph=True)
    (gx_ref,) = torch.autograd.grad(ref, x, g, create_graph=True)
    gg = torch.randn_like(gx)
    (h,) = torch.autograd.grad(gx, g, gg)
    (h_ref,) = torch.autograd.grad(gx_ref, g, gg)
    tol = dict(atol=1e-3, rtol=1e-3) if dtype == torch.float32 else {}
    for a, b in [(out, ref), (gx, gx_ref), (h, h_ref)]:
        torch.testing.assert_close(a, b, **tol)
    if dtype == torch.float64:
        small = torch.randn(1, 2, 5, 4, device="cuda", dtype=dtype, requires_grad=True)
        fn = lambda t: ops.upfirdn2d(t, k, up, down, pad)
        assert torch.autograd.gradcheck(fn, (small,)) and torch.autograd.gradgradcheck(fn, (small,))


@pytest.mark.cuda
def test_cuda_bf16_close_to_fp32_reference(monkeypatch):
    monkeypatch.setattr(ops.plugin, "_impl", "cuda")
    x = torch.randn(2, 4, 32, 32, device="cuda")
    k = make_kernel([1, 3, 3, 1]).cuda() * 4
    out = ops.upfirdn2d(x.bfloat16(), k, up=2, pad=(2, 1))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), upfirdn2d_ref(x, k, 2, 1, (2, 1)), atol=3e-2, rtol=3e-2)
