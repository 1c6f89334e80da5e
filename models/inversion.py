"""ReStyle's iterative refinement around a frozen StyleGAN2, shared by every encoder method.

Kinds (what the encoder sees at step t, with y_t the previous output pooled to the contour's size):
- ``restyle`` (Table 2 baseline): BackboneEncoder(cat(contour, identity, y_t)) -> W+ residual;
- ``ide``: IDEEncoder(cat(contour, y_t), identity) -> W+ residual and optional input-latent residual;
- ``psp`` (modified pSp): GradualStyleEncoder(cat(contour, identity)), a single pass.

Step 0 starts from ``latent_avg`` (n_latent, style_dim), the average image y_0 = G(latent_avg) with the
generator's fixed noise (computed once, cached), and, for the input latent, the generator's constant
input; step t adds the predicted residuals to step t-1's **detached** codes. Each step returns the
generator-resolution image, the image pooled to ``loss_resolution`` (adaptive average pooling, e.g.
1024 -> 256), the W+ code and the input latent.

Training (ReStyle backprops at every step and steps the optimizer once per batch):

    for step in model.iterate(contour, identity):          # or inversion.iterate(wrapped_model, ...)
        loss = objective(step, ...)
        accelerator.backward(loss)                         # graphs of different steps are disjoint
    optimizer.step(); optimizer.zero_grad()

A batch's identity condition is computed once and shared by its steps (:class:`SharedIdentityCondition`,
what ``EncoderMethod.train_step`` does). Each step is one ``forward`` call (``model(contour, identity,
n_iters=1, start=prev)``), so a DDP/Accelerate-wrapped model works through :func:`iterate`;
``model(contour, identity)`` runs all steps at once (same gradients as per-step backward since steps
share no graph, more memory).

The generator (``decoder``) is frozen: requires_grad False, always in eval mode; gradients flow through
it to the encoder only. Noise: random in training, the generator's fixed buffers in eval (ReStyle's
behaviour), unless ``randomize_noise`` is given. Module layout = pSp/ReStyle checkpoints' (``encoder.*``,
``decoder.*``, ``latent_avg``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.step_norm import StepBatchNorm2d, set_norm_step
from ops.shapes import assert_shape

KINDS = ("restyle", "ide", "psp")


class Step(NamedTuple):
    """One refinement step (a NamedTuple, so Accelerate's fp32 output conversion reaches its tensors)."""

    index: int
    image: torch.Tensor  # (B, 3, G, G) at generator resolution, roughly [-1, 1] (unclamped)
    image_loss_res: torch.Tensor  # (B, 3, R, R), R = loss_resolution
    w: torch.Tensor  # (B, n_latent, style_dim)
    input_latent: torch.Tensor | None  # (B, C4, 4, 4) or None (constant input)
    identity_features: list[torch.Tensor] | None = None  # frozen-E_id features reused by later steps
    identity_condition: list[torch.Tensor] | None = None  # IFM modulations reused by later steps (no grad)


def pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size) by adaptive average pooling (identity when already that size)."""
    return x if x.shape[-2:] == (size, size) else F.adaptive_avg_pool2d(x, size)


class _AddGradient(torch.autograd.Function):
    """x in forward; in backward, the incoming gradient plus ``extra`` (a gradient collected elsewhere)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        ctx.extra = extra
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad + ctx.extra, None


class SharedIdentityCondition:
    """The IDE encoder's identity condition of one training batch (E_id's features and the IFMs' gamma and
    beta, ``IDEEncoder.identity_condition``), computed once and shared by its ``n_steps`` refinement steps,
    each of which backpropagates on its own (the training protocol of the module docstring).

    The weights cannot change within a batch, so every step would recompute the same tensors; computing
    them once saves n - 1 forwards and backwards of E_id and the IFMs' FCNs. Steps before the last get
    detached copies whose ``.grad`` collects each step's gradient; the last step gets the tensors with their
    graph, through an op that adds the collected gradients in backward: E_id and the FCNs backpropagate
    once, inside the last step's backward, with the sum of every step's gradient (what n backwards
    accumulate, up to summation order). So only the last step's backward reaches their parameters: under
    DDP the steps before it must not synchronise gradients (``accelerator.no_sync``), which also saves
    their all-reduces.
    """

    def __init__(self, encoder: nn.Module, identity: torch.Tensor, n_steps: int):
        self.n_steps = n_steps
        self.graph = encoder.identity_condition(encoder.identity_features(identity, uses=n_steps))
        self.leaves = [c.detach().requires_grad_(c.requires_grad) for c in self.graph]

    def for_step(self, t: int) -> list[torch.Tensor]:
        """The condition for step ``t`` (0-based), in order: call each step's backward before the next."""
        if t < self.n_steps - 1:
            return self.leaves
        return [
            c if leaf.grad is None else _AddGradient.apply(c, leaf.grad) for c, leaf in zip(self.graph, self.leaves)
        ]


@torch.no_grad()
def sample_latent_avg(generator: nn.Module, n: int = 4096, seed: int = 0) -> torch.Tensor:
    """Mean of the mapping network over ``n`` fixed-seed z samples: (style_dim,)."""
    device = next(generator.parameters()).device
    z = torch.randn(n, generator.style_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    return generator.get_latent(z).mean(0)


@torch.no_grad()
def average_image(generator: nn.Module, latent_avg: torch.Tensor) -> torch.Tensor:
    """The image every refinement starts from: G(latent_avg) with the generator's fixed noise, float32
    (1, 3, G, G) in about [-1, 1]; ``latent_avg`` (style_dim,) or (n_latent, style_dim)."""
    codes = latent_avg.reshape(-1, latent_avg.shape[-1]).expand(generator.n_latent, -1)
    image, _ = generator([codes[None]], input_is_latent=True, randomize_noise=False)
    return image.float()


class IterativeInverter(nn.Module):
    """(contour (B, C, S, S), identity (B, 3, S, S) in [-1, 1]) -> list of :class:`Step`.

    ``latent_avg``: (style_dim,), (1, style_dim) or (n_latent, style_dim) (a rosinality or pSp/ReStyle
    checkpoint's); None samples the mapping network (:func:`sample_latent_avg`).
    """

    def __init__(
        self,
        encoder: nn.Module,
        generator: nn.Module,
        kind: str,
        n_iters: int = 5,
        loss_resolution: int = 256,
        latent_avg: torch.Tensor | None = None,
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if n_iters < 1 or (kind == "psp" and n_iters != 1):
            raise ValueError(f"n_iters must be >= 1 (exactly 1 for the single-pass psp), got {n_iters}")
        self.kind, self.n_iters, self.loss_resolution = kind, n_iters, loss_resolution
        self.encoder = encoder
        self.decoder = generator.requires_grad_(False).eval()
        self.uses_input_latent = getattr(encoder, "latent_head", None) is not None
        if self.uses_input_latent:
            c4 = generator.channels[4]
            got = encoder.latent_head.convs[-1].out_channels
            if got != c4:
                raise ValueError(f"input-latent head gives {got} channels, the generator's 4x4 has {c4}")
        # an encoder with per-step BatchNorm statistics (models.step_norm) is told each step's index
        self.step_norms = [m for m in encoder.modules() if isinstance(m, StepBatchNorm2d)]
        self.register_buffer("latent_avg", torch.zeros(generator.n_latent, generator.style_dim))
        self.register_buffer("avg_image", None, persistent=False)
        self.set_latent_avg(sample_latent_avg(generator) if latent_avg is None else latent_avg)

    def set_latent_avg(self, latent_avg: torch.Tensor) -> None:
        """Set the start code (broadcast to (n_latent, style_dim)) and drop the cached average image."""
        self.latent_avg.copy_(latent_avg.reshape(-1, self.latent_avg.shape[1]).expand_as(self.latent_avg))
        self.avg_image = None

    def train(self, mode: bool = True):
        super().train(mode)
        self.decoder.eval()
        return self

    def average_image(self) -> torch.Tensor:
        """G(latent_avg) with the generator's fixed noise: (1, 3, G, G), cached after the first call."""
        if self.avg_image is None:
            self.avg_image = average_image(self.decoder, self.latent_avg)
        return self.avg_image

    def forward(self, contour, identity, n_iters=None, start=None, randomize_noise=None, identity_condition=None):
        """Run ``n_iters`` (default ``self.n_iters``) steps after ``start`` (a :class:`Step`; None = the
        average) -> list of Steps. ``randomize_noise`` None = ``self.training``. ``identity_condition``
        (ide only): the IFMs' modulations for these steps (e.g. :meth:`SharedIdentityCondition.for_step`);
        None computes them, once when they cannot change between steps (see :meth:`_reusable`)."""
        assert_shape(contour, (None, None, None, None), "contour")
        assert_shape(identity, (len(contour), 3, None, None), "identity")
        noise = self.training if randomize_noise is None else randomize_noise
        steps, prev = [], start
        for _ in range(self.n_iters if n_iters is None else n_iters):
            prev = self._step(contour, identity, prev, noise, identity_condition)
            steps.append(prev)
        return steps

    def _reusable(self, fcns: bool) -> bool:
        """Whether E_id's features (``fcns`` False) or the whole identity condition (True) of one batch may
        serve every step: E_id in eval mode (no BatchNorm update) and no graph through them (gradients off,
        or for the features a frozen E_id), so recomputing would give the same tensors."""
        grad = torch.is_grad_enabled() and (fcns or not self.encoder.identity_frozen)
        return not self.encoder.identity.training and not grad

    def iterate(self, contour, identity, n_iters=None, randomize_noise=None) -> Iterator[Step]:
        """Yield the steps one at a time (see the module docstring for the training loop)."""
        return iterate(self, contour, identity, n_iters, randomize_noise)

    def _step(self, contour, identity, prev: Step | None, randomize_noise: bool, given_condition=None) -> Step:
        b, size = contour.shape[0], contour.shape[-1]
        condition = given_condition
        if prev is None:
            index, feats = 0, None
            w = self.latent_avg.expand(b, -1, -1)
            latent = self.decoder.constant_input(b) if self.uses_input_latent else None
        elif self.kind == "psp":
            raise ValueError("psp is single-pass: it has no step after step 0")
        else:
            index, feats = prev.index + 1, prev.identity_features
            condition = condition if condition is not None else prev.identity_condition
            w, latent = prev.w.detach(), prev.input_latent
            latent = latent.detach() if latent is not None else None
        set_norm_step(self.step_norms, index)
        if self.kind == "psp":
            dw, dlatent = self.encoder(torch.cat([contour, identity], 1)), None
        else:
            previous = self.average_image().expand(b, -1, -1, -1) if prev is None else prev.image.detach()
            feedback = pool(previous, size)
            if self.kind == "restyle":
                dw, dlatent = self.encoder(torch.cat([contour, identity, feedback], 1)), None
            else:
                if condition is None:
                    if feats is None:
                        feats = self.encoder.identity_features(identity)
                    condition = self.encoder.identity_condition(feats)
                dw, dlatent = self.encoder(torch.cat([contour, feedback], 1), condition=condition)
                feats = feats if given_condition is None and self._reusable(fcns=False) else None
                condition = condition if given_condition is None and self._reusable(fcns=True) else None
        w = w + dw
        if dlatent is not None:
            latent = latent + dlatent
        image, _ = self.decoder([w], input_is_latent=True, randomize_noise=randomize_noise, input_latent=latent)
        return Step(
            index, image, pool(image, self.loss_resolution), w, latent, feats, condition if self.kind == "ide" else None
        )


def iterate(model, contour, identity, n_iters=None, randomize_noise=None) -> Iterator[Step]:
    """Yield each step of ``model`` (an IterativeInverter, possibly DDP/Accelerate-wrapped), one
    ``forward`` call per step, so the caller can compute the loss and backward before the next."""
    inner = getattr(model, "module", model)
    step = None
    for _ in range(inner.n_iters if n_iters is None else n_iters):
        (step,) = model(contour, identity, n_iters=1, start=step, randomize_noise=randomize_noise)
        yield step
