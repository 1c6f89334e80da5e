"""IR / IR-SE ResNets in TreB1eN's ArcFace layout (the IR-SE50 used by pSp, ReStyle and IDE).

State-dict keys match ``model_ir_se50.pth`` exactly: ``input_layer.{0,1,2}`` (conv3x3, BN, PReLU),
``body.{k}.shortcut_layer.{0,1}`` / ``body.{k}.res_layer.{0..5}`` (SE at ``res_layer.5.fc1/fc2``) and
``output_layer.{0,3,4}`` (BN2d, Linear, BN1d), so the official file loads with ``strict=True``.

Four stages; the first unit of each stage has stride 2, so a (B, C, S, S) input gives stage maps of
size S/2, S/4, S/8, S/16 (128, 64, 32, 16 at 256; 56, 28, 14, 7 at 112). ``stage_channels`` and
``stage_units`` override the depth's widths/units for small networks (the toy world's ArcFace);
the input layer then has ``stage_channels[0]`` outputs, as IR-SE50's 64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.frozen import freeze
from models.weights import WeightsMismatchError, load_state_file, mismatch_detail, resolve_path

STAGE_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
STAGE_CHANNELS = (64, 128, 256, 512)
MODES = ("ir", "ir_se")


def load_checkpoint(path_or_dict: str | Path | dict) -> dict:
    """A dict as is, a ``.safetensors`` file, or a torch file loaded with ``weights_only=True`` (on CPU)."""
    if isinstance(path_or_dict, dict):
        return dict(path_or_dict)
    return load_state_file(path_or_dict)


def stage_config(
    num_layers: int = 50,
    stage_channels: Sequence[int] | None = None,
    stage_units: Sequence[int] | None = None,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(channels, units) of the 4 stages: the depth's defaults unless overridden."""
    if stage_units is None and num_layers not in STAGE_UNITS:
        raise ValueError(f"num_layers must be one of {sorted(STAGE_UNITS)}, got {num_layers}")
    channels = tuple(stage_channels) if stage_channels is not None else STAGE_CHANNELS
    units = tuple(stage_units) if stage_units is not None else STAGE_UNITS[num_layers]
    if len(channels) != 4 or len(units) != 4 or min(units) < 1:
        raise ValueError(f"need 4 stages with >= 1 unit each, got channels={channels} units={units}")
    return channels, units


def unit_specs(channels: Sequence[int], units: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """Per body unit: (stage index, in channels, out channels, stride)."""
    specs, in_c = [], channels[0]
    for stage, (depth, n) in enumerate(zip(channels, units)):
        for j in range(n):
            specs.append((stage, in_c, depth, 2 if j == 0 else 1))
            in_c = depth
    return specs


def make_input_layer(in_channels: int, out_channels: int) -> nn.Sequential:
    """conv3x3 (stride 1, no bias) -> BN -> PReLU: keys ``input_layer.{0,1,2}``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.PReLU(out_channels),
    )


class SEModule(nn.Module):
    """Squeeze-excitation: x * sigmoid(fc2(relu(fc1(avgpool(x))))) with bias-free 1x1 convs."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, max(channels // reduction, 1), 1, bias=False)
        self.fc2 = nn.Conv2d(max(channels // reduction, 1), channels, 1, bias=False)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class Subsample(nn.Module):
    """(B, C, H, W) -> every ``stride``-th row and column, (B, C, ceil(H/stride), ceil(W/stride)).

    TreB1eN's identity shortcut is ``MaxPool2d(1, stride)``, a max over one pixel: the same values (and
    gradients) as this strided view, which costs no kernel of its own (the pooling was ~2% of a toy step).
    """

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return x[:, :, :: self.stride, :: self.stride]

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


class Bottleneck(nn.Module):
    """IR (``se=False``) or IR-SE unit: (B, in_c, H, W) -> (B, depth, H/stride, W/stride).

    residual = BN -> conv3x3 -> PReLU -> conv3x3(stride) -> BN [-> SE]; shortcut = subsampling
    (:class:`Subsample`, TreB1eN's MaxPool2d(1, stride)) when in_c == depth, else conv1x1(stride) + BN;
    no output activation.
    """

    def __init__(self, in_c: int, depth: int, stride: int, se: bool = True):
        super().__init__()
        if in_c == depth:
            self.shortcut_layer = Subsample(stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_c, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        layers = [
            nn.BatchNorm2d(in_c),
            nn.Conv2d(in_c, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


class IRSEBody(nn.Module):
    """``input_layer`` + ``body`` (the 4 stages), TreB1eN keys; the trunk of every encoder here.

    forward: (B, input_channels, S, S) -> last stage map (B, stage_channels[3], S/16, S/16).
    """

    def __init__(
        self,
        num_layers: int = 50,
        mode: str = "ir_se",
        input_channels: int = 3,
        stage_channels: Sequence[int] | None = None,
        stage_units: Sequence[int] | None = None,
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.stage_channels, self.stage_units = stage_config(num_layers, stage_channels, stage_units)
        specs = unit_specs(self.stage_channels, self.stage_units)
        self.stage_ends = tuple(sum(self.stage_units[: i + 1]) - 1 for i in range(4))  # (2, 6, 20, 23)
        self.input_layer = make_input_layer(input_channels, self.stage_channels[0])
        self.body = nn.Sequential(*[Bottleneck(i, d, s, se=mode == "ir_se") for _, i, d, s in specs])

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C_in, S, S) -> the 4 stage outputs [(B, stage_channels[i], S / 2**(i+1), ...)]."""
        x = self.input_layer(x)
        feats = []
        for k, unit in enumerate(self.body):
            x = unit(x)
            if k in self.stage_ends:
                feats.append(x)
        return feats

    def forward(self, x):
        return self.body(self.input_layer(x))


class Backbone(IRSEBody):
    """ArcFace IR-SE: (B, 3, input_size, input_size) in [-1, 1] -> (B, embedding_dim) L2-normalised.

    ``input_size`` must be a multiple of 16 (112 -> 7x7 last map as IR-SE50, 224 -> 14x14).
    """

    def __init__(
        self,
        input_size: int = 112,
        num_layers: int = 50,
        mode: str = "ir_se",
        drop_ratio: float = 0.6,
        affine: bool = True,
        stage_channels: Sequence[int] | None = None,
        stage_units: Sequence[int] | None = None,
        input_channels: int = 3,
        embedding_dim: int = 512,
    ):
        super().__init__(num_layers, mode, input_channels, stage_channels, stage_units)
        if input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16, got {input_size}")
        self.input_size = input_size
        c, s = self.stage_channels[3], input_size // 16
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(c),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(c * s * s, embedding_dim),
            nn.BatchNorm1d(embedding_dim, affine=affine),
        )

    def forward(self, x):
        return F.normalize(self.output_layer(super().forward(x)), dim=1)


def body_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``input_layer.*`` / ``body.*`` part of a Backbone state dict (drops ``output_layer.*``)."""
    return {k: v for k, v in state.items() if k.startswith(("input_layer.", "body."))}


def backbone_kwargs_from_state(state: dict[str, torch.Tensor]) -> dict:
    """The ``irse.Backbone`` arguments that a TreB1eN-layout state dict was saved from.

    A stage starts at unit 0 and wherever a unit's width differs from the previous unit's; two
    adjacent stages of equal width cannot be told apart (pass ``stage_units`` then).
    """
    n_units = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))
    widths = [state[f"body.{k}.res_layer.1.weight"].shape[0] for k in range(n_units)]
    starts = [k for k in range(n_units) if k == 0 or widths[k] != widths[k - 1]]
    if len(starts) != 4:
        raise ValueError(f"cannot infer 4 stages from unit widths {widths}; pass stage_units= and stage_channels=")
    units = [b - a for a, b in zip(starts, starts[1:] + [n_units])]
    channels = [widths[k] for k in starts]
    linear = state["output_layer.3.weight"]
    side = math.isqrt(linear.shape[1] // channels[-1])
    return dict(
        input_size=16 * side,
        mode="ir_se" if "body.0.res_layer.5.fc1.weight" in state else "ir",
        stage_channels=channels,
        stage_units=units,
        input_channels=state["input_layer.0.weight"].shape[1],
        embedding_dim=linear.shape[0],
        affine="output_layer.4.weight" in state,
    )


def load_arcface(name_or_path: str | Path, root: str | Path | None = None, **backbone_kwargs) -> nn.Module:
    """A frozen ``irse.Backbone`` (eval mode) with weights loaded strictly.

    ``name_or_path``: a weights-registry name (``ir_se50``, ``toy_arcface``; a missing file raises the
    registry's ``MissingWeightsError``) or a ``.pth`` (loaded with ``weights_only=True``) /
    ``.safetensors`` path. The architecture is read from the state dict; ``backbone_kwargs`` override it.
    """
    path = resolve_path(name_or_path, root)
    state = load_checkpoint(path)
    try:
        kwargs = {**backbone_kwargs_from_state(state), **backbone_kwargs}
        net = Backbone(**kwargs)
        net.load_state_dict(state, strict=True)
    except (KeyError, IndexError, ValueError, RuntimeError) as err:  # not an IR-SE state dict, or other shapes
        detail = (
            mismatch_detail(err)
            if isinstance(err, RuntimeError)
            else f"no {err} tensor"
            if isinstance(err, KeyError)
            else str(err)
        )
        raise WeightsMismatchError(
            f"{path}: not the weights of an ArcFace IR-SE backbone ({detail}); point it at "
            "an IR-SE file (e.g. model_ir_se50.pth)"
        ) from None
    return freeze(net)
