"""LPIPS perceptual loss (eq. 3's L_per) through the ``lpips`` package, with a frozen feature network."""

from __future__ import annotations

from pathlib import Path

import lpips
import torch
from torch import nn

from models.frozen import freeze
from models.irse import load_arcface
from models.lpips_network import make_lpips
from ops.resize import resize_to


class PerceptualLoss(nn.Module):
    """LPIPS distance, averaged over the batch.

    ``net`` is an ``lpips.LPIPS`` module (or anything with its call signature: two (B, 3, H, W) images
    in [-1, 1] -> (B, 1, 1, 1) distances); it is frozen and stays in eval mode even when the owner
    calls ``.train()``. Gradients flow to the inputs only.

    forward(output (B, 3, H, W), target (B, 3, R, R)) in [-1, 1] -> scalar >= 0 (0 for identical
    images); the output is first brought to the target's resolution R.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = freeze(net)

    @classmethod
    def from_backbone(
        cls,
        backbone: str = "alex",
        weights_root: str | Path | None = None,
        network: str | Path | nn.Module | None = None,
    ) -> PerceptualLoss:
        """LPIPS v0.1 on AlexNet (``backbone='alex'``; trunk from the registry's ``lpips_alex``, whose
        ``MissingWeightsError`` stops an offline run) or the lpips code path on an IR-SE network's stage
        features (``backbone='irse'``; ``network`` is the IR-SE module or its registry name / path: the
        world's evaluation ArcFace, so that loss and metric compare the same features, as the real world
        trains and evaluates with the same AlexNet). ``backbone`` is a name in ``models.lpips_network.BACKBONES``."""
        if backbone != "irse":
            return cls(make_lpips(backbone, weights_root=weights_root))
        if network is None:
            raise ValueError(
                f"the LPIPS backbone {backbone!r} needs network= (loss.perceptual_network): an "
                "IR-SE module, its registry name or a path"
            )
        if not isinstance(network, nn.Module):
            network = load_arcface(network, root=weights_root)
        return cls(make_lpips(backbone, network=network))

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.net.eval()
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) in [-1, 1] -> the channel-unit-normalised feature maps LPIPS compares, one per level.

        A target's features are a per-batch constant: :class:`losses.Objective` computes them once for all
        refinement steps of a batch instead of once per step."""
        levels = self.net.net(self.net.scaling_layer(x))
        return [lpips.normalize_tensor(levels[k]) for k in range(self.net.L)]

    def distance(self, output: torch.Tensor, target_features: list[torch.Tensor]) -> torch.Tensor:
        """Mean LPIPS of output (B, 3, R, R) in [-1, 1] to the target whose :meth:`features` are given:
        ``lpips.LPIPS.forward``'s arithmetic (non-spatial), in its order, so the value is bitwise its own."""
        net, value = self.net, 0
        for k, (f_out, f_tgt) in enumerate(zip(self.features(output), target_features)):
            diff = (f_out - f_tgt) ** 2
            value += lpips.spatial_average(net.lins[k](diff) if net.lpips else diff.sum(dim=1, keepdim=True))
        return value.mean()

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.distance(resize_to(output, target.shape[-2:], "area"), self.features(target))
