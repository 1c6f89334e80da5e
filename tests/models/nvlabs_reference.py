"""A small NVlabs-layout StyleGAN2 generator (G_ema's modules and parameter names), written here from NVlabs'
semantics: the reference the conversion to rosinality's layout is checked against."""

import math

import torch
import torch.nn.functional as F
from torch import nn

SIZE, W_DIM, N_MLP = 16, 8, 2
CHANNELS = {4: 8, 8: 6, 16: 4}
FILTER = torch.tensor([1.0, 3.0, 3.0, 1.0]).outer(torch.tensor([1.0, 3.0, 3.0, 1.0])) / 64  # setup_filter


def lrelu(x, bias):
    return F.leaky_relu(x + bias.view(1, -1, *[1] * (x.ndim - 2)), 0.2) * math.sqrt(2)


def fir(x, f, pad):
    """NVlabs upfirdn2d without resampling: pad [x0, x1, y0, y1], then convolve (flip_filter=False)
    each channel with f."""
    c = x.shape[1]
    return F.conv2d(F.pad(x, pad), f.flip([0, 1]).expand(c, 1, *f.shape), groups=c)


class FC(nn.Module):
    def __init__(self, cin, cout, lr=1.0, bias_init=0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr)
        self.bias = nn.Parameter(torch.full((cout,), bias_init) + 0.1 * torch.randn(cout))
        self.weight_gain, self.bias_gain = lr / math.sqrt(cin), lr

    def forward(self, x):
        return x @ (self.weight * self.weight_gain).t() + self.bias * self.bias_gain


class Layer(nn.Module):
    """SynthesisLayer: affine styles, modulated conv (transposed conv when up=2, as conv2d_resample),
    const noise * noise_strength, bias + lrelu * sqrt(2)."""

    def __init__(self, cin, cout, res, up):
        super().__init__()
        self.up = up
        self.affine = FC(W_DIM, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3))
        self.bias = nn.Parameter(0.1 * torch.randn(cout))
        self.noise_strength = nn.Parameter(0.3 * torch.randn(()))
        self.register_buffer("noise_const", torch.randn(res, res))
        self.register_buffer("resample_filter", FILTER.clone())

    def forward(self, x, w):
        b, cin = x.shape[:2]
        wt = self.weight[None] * self.affine(w).view(b, 1, cin, 1, 1)
        wt = wt * (wt.square().sum([2, 3, 4], keepdim=True) + 1e-8).rsqrt()
        x = x.reshape(1, b * cin, *x.shape[2:])
        if self.up == 2:
            # conv2d_resample(up=2, padding=1, flip_weight=False): the wrapper gets flip_weight=True, so no
            # flip; transposed conv with padding 0, then upfirdn2d with padding 1 on each side and gain 4
            wt = wt.transpose(1, 2).reshape(b * cin, -1, 3, 3)
            x = F.conv_transpose2d(x, wt, stride=2, groups=b)
            x = fir(x, self.resample_filter * 4, [1, 1, 1, 1])
        else:
            x = F.conv2d(x, wt.reshape(-1, cin, 3, 3), padding=1, groups=b)
        x = x.reshape(b, -1, *x.shape[2:]) + self.noise_const * self.noise_strength
        return lrelu(x, self.bias)


class ToRGB(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.affine = FC(W_DIM, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(3, cin, 1, 1))
        self.bias = nn.Parameter(0.1 * torch.randn(3))

    def forward(self, x, w):
        styles = self.affine(w) / math.sqrt(x.shape[1])
        return torch.einsum("bchw,oc,bc->bohw", x, self.weight[:, :, 0, 0], styles) + self.bias.view(1, -1, 1, 1)


class Block(nn.Module):
    def __init__(self, res):
        super().__init__()
        cout = CHANNELS[res]
        if res == 4:
            self.const = nn.Parameter(torch.randn(cout, 4, 4))
        else:
            self.conv0 = Layer(CHANNELS[res // 2], cout, res, up=2)
        self.conv1 = Layer(cout, cout, res, up=1)
        self.torgb = ToRGB(cout)
        self.register_buffer("resample_filter", FILTER.clone())

    def forward(self, x, img, ws):
        """ws: this block's slice (B, num_conv + 1, W_DIM)."""
        if hasattr(self, "const"):
            x = self.conv1(self.const.expand(ws.shape[0], -1, -1, -1), ws[:, 0])
        else:
            x = self.conv1(self.conv0(x, ws[:, 0]), ws[:, 1])
        if img is not None:  # upsample2d: zero insertion, pad (2, 1), filter with gain 4
            up = img.new_zeros(*img.shape[:2], img.shape[2] * 2, img.shape[3] * 2)
            up[:, :, ::2, ::2] = img
            img = fir(up, self.resample_filter * 4, [2, 1, 2, 1])
        y = self.torgb(x, ws[:, -1])
        return x, y if img is None else img + y


class Mapping(nn.Module):
    def __init__(self, num_ws):
        super().__init__()
        self.num_ws = num_ws
        for i in range(N_MLP):
            setattr(self, f"fc{i}", FC(W_DIM, W_DIM, lr=0.01))
        self.register_buffer("w_avg", torch.randn(W_DIM))

    def forward(self, z, c):
        assert z.ndim == 2 and z.shape[1] == W_DIM, f"z must be (B, {W_DIM}), got {tuple(z.shape)}"
        x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        for i in range(N_MLP):
            fc = getattr(self, f"fc{i}")
            x = lrelu(x @ (fc.weight * fc.weight_gain).t(), fc.bias * fc.bias_gain)
        return x[:, None].repeat(1, self.num_ws, 1)


class Synthesis(nn.Module):
    def __init__(self):
        super().__init__()
        self.resolutions = [2**i for i in range(2, int(math.log2(SIZE)) + 1)]
        for res in self.resolutions:
            setattr(self, f"b{res}", Block(res))

    def forward(self, ws, noise_mode="const", force_fp32=True):
        # NVlabs' shape contract (misc.assert_shape); only the constant noise is written here
        n_ws = 2 * len(self.resolutions)
        assert ws.ndim == 3 and ws.shape[1:] == (n_ws, W_DIM), f"ws must be (B, {n_ws}, {W_DIM}), got {tuple(ws.shape)}"
        assert noise_mode == "const", f"this reference draws only noise_mode='const', not {noise_mode!r}"
        x = img = None
        w_idx = 0
        for res in self.resolutions:
            n_conv = 1 if res == 4 else 2
            x, img = getattr(self, f"b{res}")(x, img, ws[:, w_idx : w_idx + n_conv + 1])
            w_idx += n_conv
        return img


class NVlabsGenerator(nn.Module):
    """stylegan2-ada-pytorch's G layout and API (mapping(z, c), synthesis(ws, noise_mode=...))."""

    def __init__(self):
        super().__init__()
        self.synthesis = Synthesis()
        self.mapping = Mapping(num_ws=2 * int(math.log2(SIZE)) - 2)
