"""StyleGAN2 generator and discriminator with rosinality's state-dict layout (REFERENCE.md section 1), on the
building blocks of ``models.stylegan2_layers``.

``Generator(1024, 512, 8).load_state_dict(torch.load("stylegan2-ffhq-config-f.pt")["g_ema"])`` loads
strictly. Additions that keep the layout: ``input_latent`` (IDE's 4x4 input latent replacing the
learned constant) and ``channels`` (a {resolution: channels} override for the toy world; the default
is rosinality's table). Images are (B, 3, size, size), unclamped, roughly in [-1, 1].
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import torch
from torch import nn

from models.stylegan2_layers import (
    Blur,
    EqualConv2d,
    EqualLinear,
    ModulatedConv2d,
    PixelNorm,
    Upsample,
    channel_table,
)
from models.weights import load_state_file, load_torch_file
from ops import FusedLeakyReLU
from ops.shapes import assert_shape


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image, noise=None):
        """image (B, C, H, W); noise (B or 1, 1, H, W) or None for fresh N(0, 1) noise."""
        if noise is None:
            b, _, h, w = image.shape
            noise = image.new_empty(b, 1, h, w).normal_()
        return image + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channel, size=4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, x):
        """Only ``x.shape[0]`` (the batch size) is read -> (B, C, size, size)."""
        return self.input.repeat(x.shape[0], 1, 1, 1)


class StyledConv(nn.Module):
    def __init__(
        self, in_channel, out_channel, kernel_size, style_dim, upsample=False, blur_kernel=(1, 3, 3, 1), demodulate=True
    ):
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channel,
            out_channel,
            kernel_size,
            style_dim,
            demodulate=demodulate,
            upsample=upsample,
            blur_kernel=blur_kernel,
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x, style, noise=None):
        return self.activate(self.noise(self.conv(x, style), noise=noise))


class ToRGB(nn.Module):
    def __init__(self, in_channel, style_dim, upsample=True, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        """x (B, C, H, W), style (B, style_dim), skip (B, 3, H/2, W/2) or None -> (B, 3, H, W)."""
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class Generator(nn.Module):
    """StyleGAN2 generator (config-f at 1024 with the defaults), rosinality layout.

    channels: optional {resolution: channels} override of rosinality's table (e.g. the toy world's
    {4: 128, 8: 128, 16: 64, 32: 64, 64: 32}); ``self.channels`` is the full table in use.
    """

    def __init__(
        self, size, style_dim=512, n_mlp=8, channel_multiplier=2, blur_kernel=(1, 3, 3, 1), lr_mlp=0.01, channels=None
    ):
        super().__init__()
        self.size, self.style_dim = size, style_dim
        self.log_size = int(math.log2(size))
        if 2**self.log_size != size or size < 4:
            raise ValueError(f"size must be a power of two >= 4, got {size}")
        self.channels = channel_table(channel_multiplier, channels)
        self.style = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)],
        )

        c4 = self.channels[4]
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(c4, style_dim, upsample=False)
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2

        self.convs, self.upsamples, self.to_rgbs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, res, res))
        in_channel = c4
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2**i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim))  # rosinality keeps the default kernel here
            in_channel = out_channel

    def set_factored_backward(self, on: bool) -> Generator:
        """Switch the frozen-weight backward of every modulated conv (:class:`ModulatedConv2d`)."""
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m.factored_backward = on
        return self

    def make_noise(self, batch: int = 1) -> list[torch.Tensor]:
        """Fresh N(0, 1) noise maps, one (batch, 1, r, r) per layer (num_layers entries)."""
        device = self.input.input.device
        return [
            torch.randn(batch, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), device=device)
            for i in range(self.num_layers)
        ]

    @torch.no_grad()
    def mean_latent(self, n: int) -> torch.Tensor:
        """Mean of the mapping network over n random z: (1, style_dim)."""
        z = torch.randn(n, self.style_dim, device=self.input.input.device)
        return self.style(z).mean(0, keepdim=True)

    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Mapping network: z (B, style_dim) -> w (B, style_dim)."""
        return self.style(z)

    def constant_input(self, batch: int) -> torch.Tensor:
        """The learned constant repeated: (batch, channels[4], 4, 4)."""
        return self.input.input.repeat(batch, 1, 1, 1)

    def forward(
        self,
        styles,
        return_latents=False,
        inject_index=None,
        truncation=1,
        truncation_latent=None,
        input_is_latent=False,
        noise=None,
        randomize_noise=True,
        input_latent=None,
    ):
        """styles: list of z (B, style_dim) (or w with ``input_is_latent``), or [w+ (B, n_latent, style_dim)].

        Two styles mix at ``inject_index`` (random if None). noise: list of num_layers maps or None
        (fresh noise when ``randomize_noise``, else the stored ``noises.noise_i``). input_latent:
        (B, channels[4], 4, 4) replacing the constant input. Returns (image (B, 3, size, size), the
        W+ latent (B, n_latent, style_dim) if ``return_latents`` else None).
        """
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if noise is None:
            noise = (
                [None] * self.num_layers
                if randomize_noise
                else [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
            )
        if truncation < 1:
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]

        if len(styles) < 2:
            latent = styles[0] if styles[0].ndim == 3 else styles[0].unsqueeze(1).repeat(1, self.n_latent, 1)
        else:
            if inject_index is None:
                inject_index = random.randint(1, self.n_latent - 1)
            latent = torch.cat(
                [
                    styles[0].unsqueeze(1).repeat(1, inject_index, 1),
                    styles[1].unsqueeze(1).repeat(1, self.n_latent - inject_index, 1),
                ],
                1,
            )

        if input_latent is None:
            out = self.input(latent)
        else:
            assert_shape(input_latent, (latent.shape[0], self.channels[4], 4, 4), "input_latent")
            out = input_latent
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv1, conv2, noise1, noise2, to_rgb in zip(
            self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs
        ):
            out = conv1(out, latent[:, i], noise=noise1)
            out = conv2(out, latent[:, i + 1], noise=noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return (skip, latent) if return_latents else (skip, None)


class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d (stride 2 when downsampling) -> [FusedLeakyReLU] (rosinality layout)."""

    def __init__(
        self, in_channel, out_channel, kernel_size, downsample=False, blur_kernel=(1, 3, 3, 1), bias=True, activate=True
    ):
        layers = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
        layers.append(
            EqualConv2d(
                in_channel,
                out_channel,
                kernel_size,
                stride=2 if downsample else 1,
                padding=0 if downsample else kernel_size // 2,
                bias=bias and not activate,
            )
        )
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_channel, out_channel, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(
            in_channel, out_channel, 1, downsample=True, blur_kernel=blur_kernel, activate=False, bias=False
        )

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: (B, 3, size, size) in [-1, 1] -> (B, 1) logits."""

    def __init__(self, size, channel_multiplier=2, blur_kernel=(1, 3, 3, 1), channels=None):
        super().__init__()
        self.channels = ch = channel_table(channel_multiplier, channels)
        log_size = int(math.log2(size))
        convs = [ConvLayer(3, ch[size], 1)]
        in_channel = ch[size]
        for i in range(log_size, 2, -1):
            convs.append(ResBlock(in_channel, ch[2 ** (i - 1)], blur_kernel))
            in_channel = ch[2 ** (i - 1)]
        self.convs = nn.Sequential(*convs)
        self.stddev_group, self.stddev_feat = 4, 1
        self.final_conv = ConvLayer(in_channel + 1, ch[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 4 * 4, ch[4], activation="fused_lrelu"), EqualLinear(ch[4], 1)
        )

    def forward(self, x):
        out = self.convs(x)
        b, c, h, w = out.shape
        # minibatch-stddev groups must divide the batch; rosinality requires that, we take the largest divisor
        group = max(g for g in range(1, min(b, self.stddev_group) + 1) if b % g == 0)
        std = out.view(group, -1, self.stddev_feat, c // self.stddev_feat, h, w)
        std = torch.sqrt(std.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
        out = torch.cat([out, std.repeat(group, 1, h, w)], 1)
        return self.final_linear(self.final_conv(out).view(b, -1))


def _read_checkpoint(path_or_state) -> dict:
    if isinstance(path_or_state, dict):
        return path_or_state
    path = Path(path_or_state)
    if path.suffix == ".safetensors":
        flat = load_state_file(path)
        ckpt = {"g_ema": {k[len("g_ema.") :]: v for k, v in flat.items() if k.startswith("g_ema.")}}
        if "latent_avg" in flat:
            ckpt["latent_avg"] = flat["latent_avg"]
        return ckpt
    return load_torch_file(path)


def load_generator(path_or_state, size, n_mean_latent=10_000, **kwargs):
    """Build ``Generator(size, **kwargs)`` and load it strictly -> (generator, latent_avg (style_dim,)).

    path_or_state: a rosinality checkpoint ``.pt`` (``{'g_ema': state_dict, 'latent_avg': (style_dim,),
    ...}``, read with ``weights_only=True``), a ``.safetensors`` written by :func:`save_generator`, or
    such a dict (a bare generator state dict is accepted too). Without a stored ``latent_avg`` it is
    the mean of ``n_mean_latent`` mapped z drawn from a fixed seed.
    """
    ckpt = _read_checkpoint(path_or_state)
    state = ckpt.get("g_ema", ckpt)
    generator = Generator(size, **kwargs)
    generator.load_state_dict(state, strict=True)
    if ckpt.get("latent_avg") is not None:
        latent_avg = ckpt["latent_avg"].float().reshape(generator.style_dim)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            latent_avg = generator.mean_latent(n_mean_latent)[0]
    return generator, latent_avg


def save_generator(path, generator: Generator, latent_avg: torch.Tensor) -> None:
    """Write ``{'g_ema': state_dict, 'latent_avg'}``: ``.safetensors`` as flat ``g_ema.<key>`` tensors +
    ``latent_avg``, anything else with ``torch.save`` (rosinality's format)."""
    state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    latent_avg = latent_avg.detach().cpu().reshape(-1).contiguous()
    if Path(path).suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({**{f"g_ema.{k}": v for k, v in state.items()}, "latent_avg": latent_avg}, str(path))
    else:
        torch.save({"g_ema": state, "latent_avg": latent_avg}, path)
