"""The full objective of eq. (6): L = l1 * L2 + l2 * L_per + l3 * L_id + l4 * L_w."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from losses.identity import PSP_CROP, IdentityLoss
from losses.perceptual import PerceptualLoss
from losses.reconstruction import ReconstructionL2
from losses.wnorm import WNormLoss
from models.irse import load_arcface
from ops.resize import resize_to


class LossTargets(NamedTuple):
    """A batch's loss targets (:meth:`Objective.targets`): shared by all its refinement steps."""

    image: torch.Tensor  # (B, 3, R, R) in [-1, 1], the real face x_hat_c at the loss resolution R
    perceptual: list[torch.Tensor] | None  # PerceptualLoss.features(image); None when lpips is off
    identity_embedding: torch.Tensor | None  # (B, D) unit ArcFace embeddings of the identity images


@dataclass
class LossWeights:
    """Weights of eq. (6): l2 = lambda1, lpips = lambda2, id = lambda3, wnorm = lambda4; the defaults are the
    paper's (section 3.1). A weight of 0 switches its term off."""

    l2: float = 0.1
    lpips: float = 1.0
    id: float = 0.5
    wnorm: float = 0.003

    def __post_init__(self):
        bad = {f.name: getattr(self, f.name) for f in fields(LossWeights) if getattr(self, f.name) < 0}
        if bad:
            raise ValueError(f"loss weights must be >= 0, got {bad}")


@dataclass
class LossConfig(LossWeights):
    """The ``loss`` config section: the weights (:class:`LossWeights`) and the networks behind the terms."""

    wnorm_squared: bool = False
    perceptual: str = "alex"  # models.lpips_network.BACKBONES: alex (real LPIPS) | irse (on perceptual_network)
    perceptual_network: str | None = None  # the IR-SE trunk of perceptual=irse (registry name or path)
    id_network: str = "ir_se50"
    id_crop: list[float] = field(default_factory=lambda: list(PSP_CROP))


class Objective(nn.Module):
    """Weighted sum of the four losses; returns ``(total, terms)``.

    forward(output (B, 3, H, W), target (B, 3, R, R), identity (B, 3, S, S) | None, w (B, n_latent,
    style_dim) | None, w_avg broadcastable to w | None), images in [-1, 1]. The output is brought to the
    target's resolution R (the loss resolution) once, and every image term is computed there.
    ``terms`` maps "l2", "lpips", "id", "wnorm" to the unweighted scalar of each term whose weight is
    non-zero; a term with weight 0 is not computed and absent from ``terms`` (its network need not exist).
    A training step that compares several outputs with one batch (the refinement steps) computes the
    batch's :meth:`targets` once and calls :meth:`losses` per output: the same values, bitwise.
    """

    def __init__(
        self,
        weights: LossWeights | Mapping[str, float] | None = None,
        perceptual: PerceptualLoss | None = None,
        identity: IdentityLoss | None = None,
        wnorm_squared: bool = False,
    ):
        super().__init__()
        self.weights = weights if isinstance(weights, LossWeights) else LossWeights(**(weights or {}))
        if self.weights.lpips and perceptual is None:
            raise ValueError("loss weight lpips > 0 needs a PerceptualLoss")
        if self.weights.id and identity is None:
            raise ValueError("loss weight id > 0 needs an IdentityLoss")
        self.l2 = ReconstructionL2()
        self.perceptual = perceptual
        self.identity = identity
        self.wnorm = WNormLoss(squared=wnorm_squared)

    @classmethod
    def from_config(
        cls,
        loss_cfg: Any,
        weights_root: str | Path | None = None,
        perceptual_net: nn.Module | None = None,
        id_net: nn.Module | None = None,
    ) -> Objective:
        """From the ``loss`` config section (l2, lpips, id, wnorm, wnorm_squared, perceptual,
        id_network, id_crop), a DictConfig or a dict; only the networks of non-zero terms are loaded.
        ``perceptual_net`` (an ``lpips.LPIPS``-like module) / ``id_net`` (an ArcFace embedder) replace
        the configured networks, e.g. random weights of the same architecture in a benchmark."""
        weights = LossWeights(**{f.name: float(loss_cfg[f.name]) for f in fields(LossWeights)})
        perceptual = None
        if weights.lpips:
            perceptual = (
                PerceptualLoss(perceptual_net)
                if perceptual_net is not None
                else PerceptualLoss.from_backbone(
                    loss_cfg["perceptual"], weights_root=weights_root, network=loss_cfg.get("perceptual_network")
                )
            )
        identity = None
        if weights.id:
            crop = loss_cfg.get("id_crop") or PSP_CROP
            embedder = id_net if id_net is not None else load_arcface(loss_cfg["id_network"], root=weights_root)
            identity = IdentityLoss(embedder, crop=crop)
        return cls(weights, perceptual, identity, wnorm_squared=bool(loss_cfg.get("wnorm_squared", False)))

    @torch.no_grad()
    def targets(self, target: torch.Tensor, identity: torch.Tensor | None = None) -> LossTargets:
        """What the loss compares against, computed once per batch: every refinement step of a batch has the
        same target (B, 3, R, R) and identity images, so their LPIPS features and ArcFace embedding are
        constants of the batch (no graph)."""
        wt = self.weights
        if wt.id and identity is None:
            raise ValueError("loss weight id > 0 needs the identity images")
        return LossTargets(
            target,
            self.perceptual.features(target) if wt.lpips else None,
            self.identity.embed(identity) if wt.id else None,
        )

    def losses(
        self,
        output: torch.Tensor,
        targets: LossTargets,
        w: torch.Tensor | None = None,
        w_avg: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(total, terms)`` of ``output`` against the batch's :meth:`targets`; same values as :meth:`forward`."""
        wt = self.weights
        output = resize_to(output, targets.image.shape[-2:], "area")
        terms: dict[str, torch.Tensor] = {}
        if wt.l2:
            terms["l2"] = self.l2(output, targets.image)
        if wt.lpips:
            terms["lpips"] = self.perceptual.distance(output, targets.perceptual)
        if wt.id:
            terms["id"] = self.identity.distance(output, targets.identity_embedding).mean()
        if wt.wnorm:
            if w is None or w_avg is None:
                raise ValueError("loss weight wnorm > 0 needs w and w_avg")
            terms["wnorm"] = self.wnorm(w, w_avg)
        if not terms:
            raise ValueError("every loss weight is 0: nothing to optimise")
        total = sum(getattr(wt, k) * v for k, v in terms.items())
        return total, terms

    def forward(
        self,
        output: torch.Tensor,
        target: torch.Tensor,
        identity: torch.Tensor | None = None,
        w: torch.Tensor | None = None,
        w_avg: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.losses(output, self.targets(target, identity), w, w_avg)
