"""Modified PULSE (Table 1's optimisation-based baseline) on our StyleGAN2, with an identity loss.

PULSE (Menon et al. 2020; REFERENCE.md section 6) searches the generator's latent space, per LR
image, for a face whose bicubic downscaling matches the LR input. Our version follows the original's
recipe on our StyleGAN2 (the original used StyleGAN v1) and adds the paper's ArcFace identity term:

- latent ``z`` (B, n_latent, style_dim) (or tiled (B, 1, style_dim)), N(0, I) at start; the W+ code
  is ``LeakyReLU(0.2)(z * std + mean)``, where (mean, std) is the "Gaussian fit" of
  ``LeakyReLU(5)(mapping(z))`` over many z (LeakyReLU(5) undoes the mapping's last LeakyReLU(0.2),
  so the fitted space is close to Gaussian); the fit is cached beside the generator weights;
- noise: the first ``n_trainable_noise`` maps (per sample) are optimised, the others fixed random,
  the last layer's map zeroed (PULSE's "bad noise layer");
- :class:`SphericalOptimizer`: Adam, then every latent row and noise map rescaled to its initial
  radius (z stays on the sphere of radius ~sqrt(style_dim), where Gaussian samples live);
- per-sample loss = ``w_l2 * max(L2, eps) + w_geo * GEOCROSS + w_id * (1 - cos)``: L2 is the mean
  squared error between the generated image mapped to [0, 1] and bicubic-downsampled
  (``ops.resize.bicubic_downsample``, PULSE's filter) to the LR size, and the LR input in [0, 1];
  the clamp at eps is PULSE's (no pressure once the LR matches); GEOCROSS pulls the W+ rows together;
  the identity term is :class:`losses.IdentityLoss` between the generated face and the identity image;
- Adam lr 0.4, 100 steps, ``linear1cycledrop`` schedule, eps 2e-3 (PULSE's defaults).

Weights (our choice; the paper only says the identity loss is added and the weights "rearranged"):
``w_l2 = 100`` and ``w_geo = 0.05`` are PULSE's, ``w_id = 1`` is ours. The downscaling term (100 * L2,
tens at the start) dominates until the LR matches; once its clamp at eps takes it out, the identity
term (1 - cos in [0, 2]) steers what the LR leaves free. On a small generator this keeps the L2 near
eps while lifting identity similarity a lot (tests/models/test_pulse.py); it is not tuned on CelebA-HQ.
All weights are config values (``pulse.w_l2``, ``pulse.w_geo``, ``pulse.w_id``).

Kept image per sample (our rule): among the steps, an image whose downscaling L2 reached eps beats one
that did not; between two of the same status the lower combined loss wins (PULSE keeps the lowest
combined loss). ``PulseResult.eps_reached`` says, per sample, whether the kept image reached eps,
instead of the original's "could not find a face" message. The L2 is measured on the generated image
before the returned copy is clamped to [-1, 1] (as PULSE clamps only its output).

Other choices: GEOCROSS is scaled by style_dim / 8 (PULSE's 512 / 8); the batch loss is the sum of
the per-sample losses, so samples do not interact; the initial z and noise come from ``seed`` on every
call, so a pair's result does not depend on which batch or process it falls in. An LR contour given at
the encoder input size (``data.conditions`` upsamples the LR bicubically) is brought back to
``lr_size`` with the same downsampler, which approximates, not recovers, the original LR image.

Only LR contours are defined for PULSE (as in the paper); other modalities raise ``ValueError``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ops.atomic_write import atomic_path
from ops.resize import bicubic_downsample

# learning-rate factor at fractions of the run, linearly interpolated (PULSE's schedules)
SCHEDULES = {
    "fixed": ((0.0, 1.0), (1.0, 1.0)),
    "linear1cycle": ((0.0, 0.1), (0.5, 1.0), (1.0, 0.1)),
    "linear1cycledrop": ((0.0, 0.1), (0.45, 1.0), (0.9, 0.1), (1.0, 0.001)),
}


@dataclass
class PulseConfig:
    """Knobs of :class:`Pulse` (the ``pulse`` config section supplies those it names)."""

    steps: int = 100
    lr: float = 0.4
    schedule: str = "linear1cycledrop"  # fixed | linear1cycle | linear1cycledrop
    eps: float = 2e-3  # downscaling L2 (images in [0, 1]) that counts as LR-consistent
    w_l2: float = 100.0
    w_geo: float = 0.05
    w_id: float = 1.0
    n_trainable_noise: int = 5
    tile_latent: bool = False  # one z row for every layer (GEOCROSS is then 0)
    gaussian_fit_samples: int = 1_000_000
    seed: int | None = 0  # initial z and noise; None = torch's global RNG
    # torch.compile the generator and the identity ArcFace (experiments.methods.build_pulse); changes rounding
    compile: bool = False

    @classmethod
    def from_section(cls, section, **overrides) -> PulseConfig:
        """From the run config's ``pulse`` section (a mapping; keys that are not fields are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in section.items() if k in known}, **overrides})

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown PULSE schedule {self.schedule!r}; use one of {sorted(SCHEDULES)}")
        if min(self.w_l2, self.w_geo, self.w_id) < 0 or self.steps < 1:
            raise ValueError("PULSE weights must be >= 0 and steps >= 1")


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """Multiplier of the base learning rate at ``step`` of ``steps``."""
    xs, ys = zip(*SCHEDULES[schedule])
    return float(np.interp(step / steps, xs, ys))


def geocross(w: torch.Tensor) -> torch.Tensor:
    """PULSE's GEOCROSS per sample: (B, L, D) -> (B,) >= 0, 0 iff all L rows point the same way.

    Mean over all ordered row pairs of the squared geodesic angle 2 * atan2(|x - y|, |x + y|), times
    D / 8 (PULSE's 512 / 8 for D = 512).
    """
    x, y = w[:, None], w[:, :, None]
    angle = 2 * torch.atan2(torch.linalg.vector_norm(x - y, dim=-1), torch.linalg.vector_norm(x + y, dim=-1))
    return angle.pow(2).mean((1, 2)) * w.shape[-1] / 8


def _radius(p: torch.Tensor) -> torch.Tensor:
    """L2 norm over the dims after the first two: one per latent row (B, L, D), per noise map (B, 1, H, W)."""
    return torch.linalg.vector_norm(p, dim=tuple(range(2, p.dim())), keepdim=True)


class SphericalOptimizer(torch.optim.Adam):
    """Adam whose every step ends by rescaling each row / map of each parameter to its initial radius."""

    def __init__(self, params, **adam_kwargs):
        params = list(params)
        super().__init__(params, **adam_kwargs)
        with torch.no_grad():
            self.radii = [_radius(p) for p in params]

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for p, r in zip(self.param_groups[0]["params"], self.radii):
            p.mul_(r / _radius(p).clamp_min(1e-12))
        return loss


def mapping_hash(generator: nn.Module) -> str:
    """The fingerprint of the mapping network's ``style.*`` state, all the Gaussian fit depends on."""
    from models.weights import state_fingerprint

    return state_fingerprint(generator, "style.")


@torch.no_grad()
def fit_gaussian(generator: nn.Module, n_samples: int, seed: int = 0, chunk: int = 16384):
    """Per-dimension (mean, std), each (style_dim,) float32, of LeakyReLU(5)(mapping(z)), z ~ N(0, I)."""
    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    total = torch.zeros(2, generator.style_dim, dtype=torch.float64, device=device)
    for start in range(0, n_samples, chunk):
        z = torch.randn(min(chunk, n_samples - start), generator.style_dim, generator=rng).to(device)
        v = F.leaky_relu(generator.get_latent(z), 5.0).double()
        total += torch.stack([v.sum(0), v.pow(2).sum(0)])
    mean = total[0] / n_samples
    var = (total[1] - n_samples * mean.pow(2)) / max(n_samples - 1, 1)
    return mean.float(), var.clamp_min(0).sqrt().float()


def gaussian_fit(
    generator: nn.Module,
    n_samples: int = 1_000_000,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    recompute: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`fit_gaussian`, cached as ``<cache_dir>/gaussian_fit-<mapping hash>-<n>-<seed>.safetensors``.

    The file is read when present (unless ``recompute``) and written after a fit; an unwritable
    ``cache_dir`` only warns. Returns (mean, std) on the generator's device.
    """
    from safetensors.torch import save_file

    from models.weights import load_state_file

    device = next(generator.parameters()).device
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"gaussian_fit-{mapping_hash(generator)}-{n_samples}-{seed}.safetensors"
        if path.is_file() and not recompute:
            fit = load_state_file(path)
            return fit["mean"].to(device), fit["std"].to(device)
    mean, std = fit_gaussian(generator, n_samples, seed)
    if path is not None:
        try:
            with atomic_path(path) as tmp:
                save_file({"mean": mean.cpu(), "std": std.cpu()}, str(tmp))
        except OSError as err:
            warnings.warn(f"could not cache the PULSE Gaussian fit at {path}: {err}", stacklevel=2)
    return mean, std


@dataclass
class PulseResult:
    """The kept image per sample and its diagnostics (all per sample, on the input's device)."""

    image: torch.Tensor  # (B, 3, S, S) in [-1, 1] at the generator's resolution
    eps_reached: torch.Tensor  # (B,) bool: the kept image's downscaling L2 <= eps
    l2: torch.Tensor  # (B,) downscaling L2 of the kept image (unclamped; images in [0, 1])
    geocross: torch.Tensor  # (B,)
    id_loss: torch.Tensor | None  # (B,) 1 - cos to the identity image, None when w_id == 0
    loss: torch.Tensor  # (B,) combined loss of the kept image
    step: torch.Tensor  # (B,) int64, the step the kept image comes from
    w: torch.Tensor  # (B, n_latent, style_dim) its W+ code


class Pulse(nn.Module):
    """Batched modified PULSE: forward(contour (B, 3, h, h) in [-1, 1], identity (B, 3, H, H) in [-1, 1]).

    ``generator``: our StyleGAN2 (frozen here). ``mean``/``std`` (style_dim,): its Gaussian fit.
    ``identity_loss``: a ``losses.IdentityLoss`` (``embed``, ``distance``; needed when ``config.w_id > 0``).
    ``lr_size``: when the contour is larger (the LR upsampled to the encoder input size, as
    ``data.conditions`` makes it), it is first brought back to ``lr_size`` with the same bicubic downsampler.
    Returns a :class:`PulseResult`. Each sample is optimised independently (the batch loss is a sum).
    """

    def __init__(
        self,
        generator: nn.Module,
        mean: torch.Tensor,
        std: torch.Tensor,
        identity_loss: nn.Module | None = None,
        config: PulseConfig | None = None,
        lr_size: int | None = None,
    ):
        super().__init__()
        self.config = config or PulseConfig()
        if self.config.w_id and identity_loss is None:
            raise ValueError("PULSE with w_id > 0 needs an identity_loss")
        self.generator = generator.eval().requires_grad_(False)
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())
        self.identity_loss = identity_loss
        self.lr_size = lr_size

    def _lr_target(self, contour: torch.Tensor) -> torch.Tensor:
        if contour.dim() != 4 or contour.shape[1] != 3:
            raise ValueError(
                f"PULSE is defined for LR contours only (RGB images (B, 3, h, h) in [-1, 1]); got shape "
                f"{tuple(contour.shape)} (a label-map contour has 19 channels, a sketch 1)"
            )
        if self.lr_size is not None and contour.shape[-1] > self.lr_size:
            contour = bicubic_downsample(contour, size=self.lr_size)
        return (contour + 1) / 2

    def _init_variables(self, batch: int, device: torch.device):
        """z (B, L, D) and the noise maps, all leaves; returns (z, noises, trainable list)."""
        cfg, g = self.config, self.generator
        rng = torch.Generator()
        if cfg.seed is None:
            rng.seed()
        else:
            rng.manual_seed(cfg.seed)
        rows = 1 if cfg.tile_latent else g.n_latent
        z = torch.randn(batch, rows, g.style_dim, generator=rng).to(device).requires_grad_(True)
        noises, trainable = [], [z]
        for i in range(g.num_layers):
            n = torch.randn(batch, *getattr(g.noises, f"noise_{i}").shape[1:], generator=rng).to(device)
            if i == g.num_layers - 1:
                n.zero_()
            elif i < cfg.n_trainable_noise:
                trainable.append(n.requires_grad_(True))
            noises.append(n)
        return z, noises, trainable

    def forward(self, contour: torch.Tensor, identity: torch.Tensor | None = None) -> PulseResult:
        cfg, g = self.config, self.generator
        lr01 = self._lr_target(contour)
        use_id = cfg.w_id > 0
        if use_id and identity is None:
            raise ValueError("PULSE with w_id > 0 needs the identity images")
        batch, device = contour.shape[0], contour.device
        with torch.enable_grad():
            id_emb = None
            if use_id:
                with torch.no_grad():
                    id_emb = self.identity_loss.embed(identity)
            z, noises, trainable = self._init_variables(batch, device)
            opt = SphericalOptimizer(trainable, lr=cfg.lr)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(cfg.schedule, i, cfg.steps))
            best: dict[str, torch.Tensor] = {}
            for step in range(cfg.steps):
                opt.zero_grad(set_to_none=True)
                w = F.leaky_relu(z * self.std + self.mean, 0.2).expand(-1, g.n_latent, -1)
                image, _ = g([w], input_is_latent=True, noise=noises, randomize_noise=False)
                lr_gen = bicubic_downsample((image + 1) / 2, size=lr01.shape[-1])
                terms = {"l2": (lr_gen - lr01).pow(2).mean((1, 2, 3)), "geocross": geocross(w)}
                loss = cfg.w_l2 * terms["l2"].clamp_min(cfg.eps) + cfg.w_geo * terms["geocross"]
                if use_id:
                    terms["id_loss"] = self.identity_loss.distance(image, id_emb)
                    loss = loss + cfg.w_id * terms["id_loss"]
                self._keep_best(best, step, image, w, loss, terms)
                loss.sum().backward()
                opt.step()
                sched.step()
        return PulseResult(
            image=best["image"].clamp(-1, 1),
            eps_reached=best["l2"] <= cfg.eps,
            l2=best["l2"],
            geocross=best["geocross"],
            id_loss=best.get("id_loss"),
            loss=best["loss"],
            step=best["step"],
            w=best["w"],
        )

    @torch.no_grad()
    def _keep_best(self, best: dict, step: int, image, w, loss, terms) -> None:
        """Per sample, replace the kept entry when this step is LR-consistent and the kept one is not,
        or both have the same status and this step's combined loss is lower."""
        current = {"image": image, "w": w, "loss": loss, **terms, "step": torch.full_like(loss, step, dtype=torch.long)}
        current = {k: v.detach().clone() for k, v in current.items()}
        if not best:
            best.update(current)
            return
        ok_new, ok_old = current["l2"] <= self.config.eps, best["l2"] <= self.config.eps
        better = (ok_new & ~ok_old) | ((ok_new == ok_old) & (current["loss"] < best["loss"]))
        for k, v in current.items():
            best[k][better] = v[better]
