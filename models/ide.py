"""IDE's Identity-Guided Dual Encoder (paper section 2.3).

- Identity encoder E_id (``identity``): an IR-SE body on the identity image (B, 3, S, S) in [-1, 1];
  F_id^i, i = 1..4, are the ends of its four stages (S/2 .. S/16). Random or IR-SE/ArcFace init
  (models.encoders.init_from_irse), trainable unless ``identity_freeze``.
- Main encoder: a convolutional head (``input_layer``: conv3x3 + BN + PReLU) on cat(contour, current
  output), then 4 IFBlocks = the 4 IR-SE stages of ``body``, spatially aligned with F_id^i. IFBottleneck
  (i, j) = IR-SE bottleneck ``body[k]`` followed by the IFM layer ``ifms[str(k)]``, eq. (1)-(2):
  H^{i,j+1} = gamma * H^{i,j} + beta, gamma = 1 + FCN_gamma(F_id^i), beta = FCN_beta(F_id^i), full
  (C, H, W) tensors. Keeping ``input_layer``/``body`` in IR-SE layout lets the main encoder start from
  IR-SE50 like ReStyle's (and the ``styles`` heads keep ReStyle's keys).
- Heads on the last (S/16) map: W+ (ReStyle's GradualStyleBlocks) and, optionally, the input latent
  (B, C4, 4, 4) that replaces StyleGAN's constant input (C4 = the generator's 4x4 channels).

Design choices (the paper is silent; knobs in brackets):
- gamma is parameterised as 1 + FCN output and both FCNs' last convs are zero-initialised, so a fresh
  IFM is the identity map and a fresh IDE main encoder equals its plain IR-SE trunk.
- FCN = conv3x3(C_id -> hidden) -> LeakyReLU(0.2) -> conv3x3(hidden -> C) [``ifm_hidden``]; separate
  FCNs for gamma and beta; the first conv also maps identity channels to H's channels when they differ.
- Which bottlenecks get an IFM [``n_ifm_per_block``]: None = all; k = the first k of each stage (the
  rest of the stage then mixes the fused features).
- F_id and the IFMs' gamma/beta (the ``identity_condition``) are constants of a batch: without gradients
  (evaluation) they are computed once and serve every refinement step, as a frozen E_id's features do; in
  training they are computed once per batch too, shared by the steps' per-step backwards
  (models.inversion.SharedIdentityCondition).
- Input-latent head: log2(S/64) x [conv3x3 stride 2 + LeakyReLU(0.01)] down to 4x4, conv3x3 +
  LeakyReLU(0.01), then a zero-initialised conv3x3, so refinement starts exactly at the constant input.
- The identity image must have the main input's size, so F_id^i and H^{i,j} share spatial sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.encoders import BackboneEncoder
from models.irse import IRSEBody, unit_specs


def _zero_conv(in_c: int, out_c: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_c, out_c, 3, 1, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class IFM(nn.Module):
    """Identity-guided feature modulation: H (B, C, h, w), F_id (B, C_id, h, w) -> gamma * H + beta."""

    def __init__(self, channels: int, id_channels: int, hidden: int = 128):
        super().__init__()
        fcn = lambda: nn.Sequential(
            nn.Conv2d(id_channels, hidden, 3, 1, 1), nn.LeakyReLU(0.2), _zero_conv(hidden, channels)
        )
        self.gamma, self.beta = fcn(), fcn()

    def modulation(self, f_id: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """F_id (B, C_id, h, w) -> (gamma, beta), each (B, C, h, w); gamma = 1 at init, beta = 0."""
        return 1 + self.gamma(f_id), self.beta(f_id)

    @staticmethod
    def modulate(h, gamma, beta):
        """H (B, C, h, w) with a :meth:`modulation` of aligned size -> gamma * H + beta."""
        if h.shape[-2:] != gamma.shape[-2:]:
            raise ValueError(f"IFM needs aligned maps, got H {tuple(h.shape)} and F_id of {tuple(gamma.shape[-2:])}")
        return gamma * h + beta

    def forward(self, h, f_id):
        return self.modulate(h, *self.modulation(f_id))


class InputLatentHead(nn.Module):
    """(B, in_c, s, s) -> input latent residual (B, out_c, 4, 4); zero at init (last conv zeroed).

    ``s`` is a power of 2: a larger map is halved by stride-2 convs (16 -> 4 at the paper's 256 input), a
    2x2 or 1x1 one (an input of 32 or 16 px) doubled by nearest upsampling, each followed by a conv."""

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        if spatial < 1 or spatial & (spatial - 1):
            raise ValueError(f"input-latent head needs a power-of-2 map, got {spatial}")
        layers, c = [], in_c
        while spatial != 4:
            up = spatial < 4
            layers += [nn.Upsample(scale_factor=2)] if up else []
            layers += [nn.Conv2d(c, out_c, 3, 1 if up else 2, 1), nn.LeakyReLU(0.01)]
            spatial, c = spatial * 2 if up else spatial // 2, out_c
        layers += [nn.Conv2d(c, out_c, 3, 1, 1), nn.LeakyReLU(0.01), _zero_conv(out_c, out_c)]
        self.convs = nn.Sequential(*layers)

    def forward(self, x):
        return self.convs(x)


class IDEEncoder(BackboneEncoder):
    """Dual encoder: (main_input (B, contour_channels + 3, S, S), identity (B, 3, S, S) in [-1, 1]) ->
    (w_delta (B, n_styles, style_dim), latent_delta (B, latent_channels, 4, 4) or None).

    ``latent_channels=None`` builds no input-latent head. ``identity_stage_*`` default to the main body's.
    """

    def __init__(
        self,
        contour_channels: int = 3,
        n_styles: int = 18,
        style_dim: int = 512,
        latent_channels: int | None = 512,
        num_layers: int = 50,
        mode: str = "ir_se",
        input_size: int = 256,
        stage_channels: Sequence[int] | None = None,
        stage_units: Sequence[int] | None = None,
        identity_stage_channels: Sequence[int] | None = None,
        identity_stage_units: Sequence[int] | None = None,
        ifm_hidden: int = 128,
        n_ifm_per_block: int | None = None,
        identity_freeze: bool = False,
    ):
        super().__init__(
            num_layers,
            mode,
            contour_channels + 3,
            n_styles,
            style_dim,
            input_size,
            stage_channels,
            stage_units,
        )
        self.contour_channels = contour_channels
        self.identity = IRSEBody(
            num_layers,
            mode,
            3,
            identity_stage_channels if identity_stage_channels is not None else self.stage_channels,
            identity_stage_units if identity_stage_units is not None else self.stage_units,
        )
        if n_ifm_per_block is not None and n_ifm_per_block < 1:
            raise ValueError("n_ifm_per_block must be >= 1 (or None for every bottleneck)")
        specs = unit_specs(self.stage_channels, self.stage_units)
        self.unit_stage = [stage for stage, *_ in specs]
        stage_start = [sum(self.stage_units[:i]) for i in range(4)]
        self.ifms = nn.ModuleDict(
            {
                str(k): IFM(depth, self.identity.stage_channels[stage], ifm_hidden)
                for k, (stage, _, depth, _) in enumerate(specs)
                if n_ifm_per_block is None or k - stage_start[stage] < n_ifm_per_block
            }
        )
        self.latent_head = (
            InputLatentHead(self.stage_channels[3], latent_channels, input_size // 16)
            if latent_channels is not None
            else None
        )
        self.identity_frozen = identity_freeze
        self.identity.requires_grad_(not identity_freeze)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.identity_frozen:
            self.identity.eval()  # frozen BN statistics too
        return self

    def identity_features(self, identity: torch.Tensor, uses: int = 1) -> list[torch.Tensor]:
        """(B, 3, S, S) in [-1, 1] -> [F_id^1..F_id^4]; no graph when E_id is frozen.

        ``uses``: how many refinement steps share these features. A training-mode E_id run ``uses`` times on
        one batch gives the same features each time and moves its BatchNorm running statistics ``uses``
        times towards the same batch statistics; computed once, each running average takes that one step
        with momentum 1 - (1 - m)^uses, which lands on the same value (up to rounding)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.identity_frozen):
            if uses == 1 or not self.identity.training:
                return self.identity.stage_features(identity)
            norms = [m for m in self.identity.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            momenta = [m.momentum for m in norms]
            if None in momenta:
                raise ValueError("identity_features(uses > 1) needs BatchNorm with a momentum (not None)")
            try:
                for m in norms:
                    m.momentum = 1 - (1 - m.momentum) ** uses
                feats = self.identity.stage_features(identity)
            finally:
                for m, momentum in zip(norms, momenta):
                    m.momentum = momentum
            for m in norms:
                m.num_batches_tracked += uses - 1
            return feats

    def identity_condition(self, id_feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """[F_id^1..F_id^4] -> every IFM's (gamma, beta), flat: [gamma, beta of the first IFM, ...] in body
        order. All the main encoder takes from the identity image; like F_id, a constant of the batch."""
        condition = []
        for k, ifm in self.ifms.items():
            condition += ifm.modulation(id_feats[self.unit_stage[int(k)]])
        return condition

    def forward(self, main_input, identity=None, condition=None):
        """``condition`` (from :meth:`identity_condition`) replaces ``identity`` when given."""
        if condition is None:
            condition = self.identity_condition(self.identity_features(identity))
        modulations = dict(zip(self.ifms.keys(), zip(condition[::2], condition[1::2])))
        h = self.input_layer(main_input)
        for k, unit in enumerate(self.body):
            h = unit(h)
            if str(k) in modulations:
                h = IFM.modulate(h, *modulations[str(k)])
        latent = self.latent_head(h) if self.latent_head is not None else None
        return self.style_codes(h), latent
