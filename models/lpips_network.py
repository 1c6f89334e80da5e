"""LPIPS networks (built here, compared by ``losses.perceptual`` and ``metrics.lpips_metric``): the real
AlexNet v0.1 metric and the lpips code path on an IR-SE network's stage features.

'alex': ``lpips.LPIPS(net='alex', version='0.1')`` with its shipped linear layers. lpips would
fetch the AlexNet trunk through torchvision's download; instead the trunk is built random
(``pnet_rand=True``) and torchvision's AlexNet state dict (``alexnet-owt-7be5be79.pth``) is loaded
from the weights registry (``lpips_alex``) into lpips' slices.

'irse': the lpips package's ``LPIPS`` with ``lpips=False`` (no learned linear layers exist for such
a trunk): per level, channel-unit-normalised features are compared by squared distance, summed over
channels, averaged over space, then summed over levels. Its ``.net`` is an IR-SE network (its
``stage_features``, e.g. an evaluation ArcFace the world names), or any module that maps
(B, 3, H, W) in [-1, 1] to a list of (B, C_l, H_l, W_l) feature maps.

The lpips package (and torchvision behind it, seconds to import) is imported when a network is built,
so the names below cost nothing to read.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from models.weights import load_torch_file, resolve

# The one list of LPIPS backbone names (``loss.perceptual``, ``eval.lpips_backbone``): AlexNet's
# features (the real metric) or an IR-SE recogniser's stage features (a world without an AlexNet of its own).
BACKBONES = ("alex", "irse")


class _FeatureLevels(nn.Module):
    """Adapts a feature network to lpips' trunk interface: forward -> tuple of feature maps."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self._features = getattr(network, "stage_features", network)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self._features(x))


def _load_alexnet_trunk(trunk: nn.Module, state_dict: dict) -> None:
    """Copy torchvision AlexNet ``features.{i}.*`` weights into lpips' ``slice{k}.{i}.*`` layout.

    lpips splits ``alexnet().features`` into slices that keep each layer's original index as its
    name, so the index i tells which slice holds it.
    """
    renamed = {}
    for slice_name, block in trunk.named_children():
        for index in block._modules:
            for param in ("weight", "bias"):
                key = f"features.{index}.{param}"
                if key in state_dict:
                    renamed[f"{slice_name}.{index}.{param}"] = state_dict[key]
    trunk.load_state_dict(renamed, strict=True)


def make_lpips(backbone: str = "alex", network: nn.Module | None = None, weights=None, weights_root=None) -> nn.Module:
    """Build an LPIPS module in eval mode (on the CPU; move it with ``.to``).

    backbone: a name in :data:`BACKBONES`. 'alex' (real metric; weights: path to torchvision's
    ``alexnet-owt-7be5be79.pth``, default the registry's ``lpips_alex``, resolved with
    ``root=weights_root``; the registry keeps it in $TORCH_HOME/hub/checkpoints. MissingWeightsError
    naming the file when absent) or 'irse' (``network`` required: a module with ``stage_features(x)``
    or whose forward returns a list of feature maps; it expects inputs in [-1, 1], so lpips' ImageNet
    input scaling is replaced by the identity. The module is put in eval mode).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown LPIPS backbone {backbone!r}: use one of {', '.join(BACKBONES)}")
    if backbone == "alex":
        path = weights if weights is not None else resolve("lpips_alex", root=weights_root)
        model = lpips_random_trunk(learned=True)
        _load_alexnet_trunk(model.net, load_torch_file(path))
    else:
        if network is None:
            raise ValueError(f"backbone={backbone!r} needs network= (an IR-SE module, e.g. an evaluation ArcFace)")
        # The AlexNet trunk and input scaling it builds are replaced: build them on the meta device
        # (no memory, no initialisation cost).
        with torch.device("meta"):
            model = lpips_random_trunk(learned=False)
        model.net = _FeatureLevels(network)
        model.scaling_layer = nn.Identity()
        model.L = _count_levels(model.net)
    return model.eval()


def lpips_random_trunk(learned: bool) -> nn.Module:
    """AlexNet-v0.1 ``lpips.LPIPS`` with a random trunk (``pnet_rand=True`` skips torchvision's download)."""
    import lpips

    with warnings.catch_warnings():
        # lpips 0.1.4 calls torchvision's alexnet(pretrained=False), deprecated since torchvision 0.13.
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        return lpips.LPIPS(net="alex", version="0.1", lpips=learned, pnet_rand=True, verbose=False)


def _count_levels(levels: _FeatureLevels, size: int = 64) -> int:
    """Number of feature maps the network returns (lpips iterates over ``L`` levels), by one probe."""
    parameter = next(iter(levels.parameters()), torch.empty(0))
    with torch.no_grad():
        probe = torch.zeros(1, 3, size, size, device=parameter.device, dtype=parameter.dtype)
        return len(levels.eval()(probe))
