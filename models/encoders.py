"""pSp's GradualStyleEncoder and ReStyle's BackboneEncoder in the official key layout.

Keys: ``input_layer.*`` and ``body.*`` (IR-SE, see models/irse.py), ``styles.{i}.convs.{0,2,..}`` and
``styles.{i}.linear.{weight,bias}`` (EqualLinear), and pSp's ``latlayer1/2``; the ``encoder.*`` part of
an official checkpoint loads strictly (:func:`load_official_encoder`) when built with its ``input_nc``.

Generalised for small worlds: the body's ``stage_channels``/``stage_units`` are configurable, every
style head maps the last-stage channels to ``style_dim`` (official: 512 -> 512), and head spatial sizes
follow ``input_size`` (the last map is input_size/16: 16 at 256, 2 at the toy world's 32).

Design choice (ReStyle's): :func:`init_from_irse` copies an ArcFace IR-SE's input layer and body;
with ``input_nc != 3`` the pretrained RGB filters go to the first 3 input channels and the other
channels get standard-normal weights, as ReStyle does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.irse import IRSEBody, body_state, load_checkpoint
from models.stylegan2_layers import EqualLinear
from models.weights import WeightsMismatchError, mismatch_detail


class GradualStyleBlock(nn.Module):
    """(B, in_c, spatial, spatial) -> (B, out_c): log2(spatial) x [conv3x3 stride 2 + LeakyReLU(0.01)],
    flatten, EqualLinear(out_c, out_c)."""

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        n = spatial.bit_length() - 1
        if spatial < 2 or 2**n != spatial:
            raise ValueError(f"spatial must be a power of 2 >= 2, got {spatial}")
        layers = []
        for i in range(n):
            layers += [nn.Conv2d(in_c if i == 0 else out_c, out_c, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x):
        return self.linear(self.convs(x).flatten(1))


class BackboneEncoder(IRSEBody):
    """ReStyle encoder: (B, input_nc, S, S) -> W+ (B, n_styles, style_dim).

    IR-SE body, then ``n_styles`` GradualStyleBlocks on the last (S/16) map.
    """

    def __init__(
        self,
        num_layers: int = 50,
        mode: str = "ir_se",
        input_nc: int = 6,
        n_styles: int = 18,
        style_dim: int = 512,
        input_size: int = 256,
        stage_channels: Sequence[int] | None = None,
        stage_units: Sequence[int] | None = None,
    ):
        super().__init__(num_layers, mode, input_nc, stage_channels, stage_units)
        self.n_styles, self.style_dim, self.input_size = n_styles, style_dim, input_size
        self.styles = nn.ModuleList(
            GradualStyleBlock(self.stage_channels[3], style_dim, input_size // 16) for _ in range(n_styles)
        )

    def style_codes(self, feat: torch.Tensor) -> torch.Tensor:
        """Last map (B, C3, S/16, S/16) -> (B, n_styles, style_dim)."""
        return torch.stack([head(feat) for head in self.styles], dim=1)

    def forward(self, x):
        return self.style_codes(super().forward(x))


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class GradualStyleEncoder(IRSEBody):
    """pSp encoder (feature pyramid): (B, input_nc, S, S) -> W+ (B, n_styles, style_dim).

    Styles 0-2 from the S/16 map c3, 3-6 from p2 = up(c3) + latlayer1(c2) at S/8, the rest from
    p1 = up(p2) + latlayer2(c1) at S/4 (c1, c2, c3 = ends of stages 2, 3, 4).
    """

    coarse_ind, middle_ind = 3, 7

    def __init__(
        self,
        num_layers: int = 50,
        mode: str = "ir_se",
        input_nc: int = 3,
        n_styles: int = 18,
        style_dim: int = 512,
        input_size: int = 256,
        stage_channels: Sequence[int] | None = None,
        stage_units: Sequence[int] | None = None,
    ):
        super().__init__(num_layers, mode, input_nc, stage_channels, stage_units)
        self.n_styles, self.style_dim, self.input_size = n_styles, style_dim, input_size
        c = self.stage_channels
        spatial = [
            input_size // (16 if i < self.coarse_ind else 8 if i < self.middle_ind else 4) for i in range(n_styles)
        ]
        self.styles = nn.ModuleList(GradualStyleBlock(c[3], style_dim, s) for s in spatial)
        self.latlayer1 = nn.Conv2d(c[2], c[3], 1)
        self.latlayer2 = nn.Conv2d(c[1], c[3], 1)

    def forward(self, x):
        _, c1, c2, c3 = self.stage_features(x)
        p2 = _upsample_add(c3, self.latlayer1(c2))
        p1 = _upsample_add(p2, self.latlayer2(c1))
        feats = [c3 if i < self.coarse_ind else p2 if i < self.middle_ind else p1 for i in range(self.n_styles)]
        return torch.stack([head(f) for head, f in zip(self.styles, feats)], dim=1)


def init_from_irse(module: IRSEBody, irse: str | Path | dict) -> None:
    """Copy an ArcFace IR-SE (Backbone state dict or file) into ``module``'s input layer and body.

    Every ``input_layer.*``/``body.*`` tensor of ``module`` must be matched (strict on that part);
    other keys (heads, IFMs) are left alone. Extra input channels: RGB filters in channels 0-2, the
    rest ~ N(0, 1) (ReStyle).
    """
    source = "the IR-SE state" if isinstance(irse, dict) else str(irse)
    hint = (
        f"{source}: IR-SE weights that do not fit the encoder body (check encoder_layers/stage_channels/"
        "stage_units, or model.identity_weights)"
    )
    state = body_state(load_checkpoint(irse))
    if "input_layer.0.weight" not in state:
        raise WeightsMismatchError(f"{hint}: no 'input_layer.0.weight' (not an IR-SE state dict)")
    rgb = state["input_layer.0.weight"]
    target = module.input_layer[0].weight
    if target.shape[1] != rgb.shape[1]:
        if target.shape[0] != rgb.shape[0] or target.shape[1] < rgb.shape[1]:
            raise WeightsMismatchError(f"{hint}: input layer {tuple(rgb.shape)} vs {tuple(target.shape)}")
        w = torch.randn(target.shape, dtype=target.dtype)
        w[:, : rgb.shape[1]] = rgb.to(target.dtype)
        state["input_layer.0.weight"] = w
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise WeightsMismatchError(f"{hint}: {mismatch_detail(err)}") from None
    missing = [k for k in missing if k.startswith(("input_layer.", "body."))]
    if missing or unexpected:
        raise WeightsMismatchError(f"{hint}: missing {missing[:3]}, unexpected {unexpected[:3]}")


def load_official_encoder(encoder: nn.Module, checkpoint: str | Path | dict) -> torch.Tensor | None:
    """Load the ``encoder.*`` part of a pSp/ReStyle checkpoint (``{'state_dict', 'opts', 'latent_avg'}``)
    strictly into ``encoder``; returns the checkpoint's ``latent_avg`` ((n_styles, style_dim)) or None."""
    ckpt = load_checkpoint(checkpoint)
    state = ckpt.get("state_dict", ckpt)
    sub = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    if not sub:
        raise ValueError("checkpoint has no 'encoder.*' tensors")
    encoder.load_state_dict(sub, strict=True)
    return ckpt.get("latent_avg")
