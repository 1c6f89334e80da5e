"""Training losses of eq. (6): pixel L2, LPIPS, ArcFace identity and W-norm, and their weighted sum."""

from losses.identity import FULL_CROP, PSP_CROP, IdentityLoss, arcface_input, crop_fraction
from losses.objective import LossTargets, LossWeights, Objective
from losses.perceptual import PerceptualLoss
from losses.reconstruction import ReconstructionL2
from losses.wnorm import WNormLoss

__all__ = [
    "FULL_CROP",
    "PSP_CROP",
    "IdentityLoss",
    "LossTargets",
    "LossWeights",
    "Objective",
    "PerceptualLoss",
    "ReconstructionL2",
    "WNormLoss",
    "arcface_input",
    "crop_fraction",
]
