"""The toy StyleGAN2 (at the world's size: 32x32, n_latent 8), distilled from the renderer.

Distilled rather than trained adversarially: a GAN needs far more images than a CPU budget allows, and
the renderer gives the exact target of every z. Fitting G([z]) ~ render(z) end to end learns very slowly
(the mapping network must discover the factors), so the two halves are fitted apart through fixed target
styles w*(z), a random embedding of the factors the renderer reads: the mapping network regresses w*(z)
(cheap, no rendering), and the synthesis network learns render(z) from w*(z) (``distillation``:
multi-scale L1 + image-gradient L1 + L1 on each intermediate skip image).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from data.toyfaces.render import (
    FACTOR_DIMS,
    HAIR_COLOURS,
    HAIR_STYLES,
    SKIN_TONES,
    factors_from_gaussian,
    render_gaussian,
)
from experiments.config_schema import ConfigError
from experiments.toy_pretraining.distillation import discriminator_step, part_weights, psnr, synthesis_loss
from experiments.toy_pretraining.export import fp16_state
from experiments.toy_pretraining.sizes import toy_world_sizes
from experiments.toy_pretraining.training import cosine_lr, load_checkpoint, save_atomic, start_wandb, step_generator
from ops.atomic_write import atomic_path


@dataclass
class GeneratorConfig:
    """The toy StyleGAN2 (world/toy.yaml's generator section, by default) and its two-part distillation schedule."""

    name: str = "toy_stylegan2"
    seed: int = 3
    size: int = field(default_factory=lambda: toy_world_sizes().image_size)
    style_dim: int = field(default_factory=lambda: toy_world_sizes().style_dim)
    n_mlp: int = field(default_factory=lambda: toy_world_sizes().n_mlp)
    channels: tuple[tuple[int, int], ...] = field(default_factory=lambda: toy_world_sizes().channels)
    # The distillation stage of the shipped generator: about 20 minutes on a 2-core CPU at 32 px; a perceptual
    # stage follows (models/pretrained/README.md has the chain and its figures). Batches of 4 learn more per
    # CPU second than 16; on a GPU, larger batches and more steps are the way on.
    steps: int = 20_000  # synthesis steps
    batch_size: int = 4
    lr: float = 3e-3
    gradient_weight: float = 1.0
    embedding_scale: float = 2.0  # std-ish of the target styles w*(z)
    # The mapping is cheap to fit (no rendering) and its error dominated the samples' Frechet distance,
    # so it gets many steps (its floor is above 0: PixelNorm drops |z|, which the renderer reads).
    mapping_steps: int = 40_000
    mapping_batch_size: int = 512
    mapping_lr: float = 15.0  # x the lr_mul 0.01 of the mapping layers (their stored weights are 100x)
    # Adversarial sharpening (0 = pure distillation): a regression on deterministic targets still settles
    # on blurred parts while it is underfit; a non-saturating GAN term (our Discriminator, lazy R1) on top
    # of the L1 anchor pushes eyes, brows and mouth to be drawn, as pix2pix's GAN + L1.
    adversarial_weight: float = 0.0
    # The LPIPS loss (losses.perceptual, unlearned, lpips code path) on the toy ID-loss ArcFace's stages
    # (0 = off): weights the parts that identity lives in.
    perceptual_weight: float = 0.0
    perceptual_net: str = "toy_arcface"  # a weights-registry name or a path (models.irse.load_arcface)
    # Extra weight of the fine parts' pixels (eyes, brows, nose, mouth; from the renderer's label map) in
    # the full-size distillation loss (0 = off). An underfit L1 regression draws the per-pixel median,
    # which is skin wherever a small part is not yet placed exactly: its samples then draw no eyes at
    # all. Weighting the parts (1 + part_weight) draws a part where its odds exceed 1 / (1 + part_weight).
    part_weight: float = 10.0
    d_lr: float = 2e-3
    r1_gamma: float = 0.1
    r1_every: int = 16
    ckpt_every: int = 100
    sample_every: int = 200


def build_generator(cfg: GeneratorConfig):
    from models.stylegan2 import Generator

    return Generator(cfg.size, style_dim=cfg.style_dim, n_mlp=cfg.n_mlp, channels=dict(cfg.channels))


def factor_features(z: torch.Tensor) -> torch.Tensor:
    """What the renderer reads from z: (B, FACTOR_DIMS + palette sizes) = the factor codes mapped to
    [-1, 1] (normal CDF) and one-hot palette choices (skin tone, hair colour, hair style)."""
    f = factors_from_gaussian(z)
    uniform = torch.erf(z[:, :FACTOR_DIMS] / math.sqrt(2.0))
    palettes = [
        F.one_hot(f["skin_tone"], len(SKIN_TONES)),
        F.one_hot(f["hair_colour"], len(HAIR_COLOURS)),
        F.one_hot(f["hair_style"], len(HAIR_STYLES)),
    ]
    return torch.cat([uniform, *palettes], 1).float()


def target_styles(z: torch.Tensor, cfg: GeneratorConfig) -> torch.Tensor:
    """w*(z) (B, style_dim): a fixed random embedding of ``factor_features`` (seeded by cfg.seed).

    The synthesis network learns to draw from w*, the mapping network learns z -> w*; apart, each is
    a well-posed regression that a CPU budget can fit, while fitting G([z]) end to end is far slower.
    """
    feats = factor_features(z)
    proj = torch.randn(feats.shape[1], cfg.style_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(z.device)
    pre = feats @ (proj * cfg.embedding_scale / math.sqrt(feats.shape[1]))
    # the mapping's last layer ends in a scaled leaky ReLU: give w* the same form so it can be matched
    return F.leaky_relu(pre, 0.2) * math.sqrt(2.0)


def build_discriminator(cfg: GeneratorConfig):
    """Our StyleGAN2 Discriminator with the generator's channel layout: (B, 3, size, size) -> (B, 1)."""
    from models.stylegan2 import Discriminator

    return Discriminator(cfg.size, channels=dict(cfg.channels))


def skip_images(g, w: torch.Tensor) -> dict[int, torch.Tensor]:
    """The skip-branch RGB image at every resolution {4: (B, 3, 4, 4), ..., size: G's output}.

    The same computation as ``Generator.forward`` with one style w (B, style_dim) for all layers and the
    stored noise (rosinality's layer layout); the last entry equals G([w], input_is_latent=True,
    randomize_noise=False)[0].
    """
    latent = w[:, None].expand(-1, g.n_latent, -1)
    noise = [getattr(g.noises, f"noise_{i}") for i in range(g.num_layers)]
    out = g.conv1(g.input(latent), latent[:, 0], noise=noise[0])
    skip = g.to_rgb1(out, latent[:, 1])
    skips, i, res = {4: skip}, 1, 4
    for conv1, conv2, noise1, noise2, to_rgb in zip(g.convs[::2], g.convs[1::2], noise[1::2], noise[2::2], g.to_rgbs):
        out = conv2(conv1(out, latent[:, i], noise=noise1), latent[:, i + 1], noise=noise2)
        skip = to_rgb(out, latent[:, i + 2], skip)
        res *= 2
        skips[res] = skip
        i += 2
    return skips


def generator_batch(
    cfg: GeneratorConfig, gen: torch.Generator, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(z (B, style_dim) standard normal, the renderer's image of z (B, 3, size, size) in [-1, 1], its
    label map (B, size, size) int64) on ``device`` (z drawn on the CPU, as in ``arcface_batch``)."""
    z = torch.randn(cfg.batch_size, cfg.style_dim, generator=gen).to(device)
    target = render_gaussian(z, cfg.size)
    return z, target.image, target.labels


def sample_grid(generator, z: torch.Tensor, path: Path, size: int) -> None:
    """Rows: renderer targets, G([z]) through the mapping network, for a fixed z."""
    import torchvision

    with torch.no_grad():
        fake, _ = generator([z], randomize_noise=False)
    grid = torch.cat([render_gaussian(z, size).image, fake.clamp(-1, 1)]).cpu()
    torchvision.utils.save_image((grid + 1) / 2, str(path), nrow=len(z))


def fit_mapping(g, cfg: GeneratorConfig, progress: bool = True) -> None:
    """Regress the mapping network onto w*(z) for ``mapping_steps`` (MSE, no rendering: cheap), from its
    current weights (fresh or a loaded generator's), with a cosine schedule from ``mapping_lr``."""
    opt = torch.optim.Adam(g.style.parameters(), lr=cfg.mapping_lr, betas=(0.9, 0.99))
    bar = tqdm(range(cfg.mapping_steps), desc=f"{cfg.name} mapping", disable=not progress)
    for step in bar:
        z = torch.randn(cfg.mapping_batch_size, cfg.style_dim, generator=step_generator(cfg.seed + 1, step))
        z = z.to(next(g.style.parameters()).device)
        target = target_styles(z, cfg)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, cfg.mapping_steps, cfg.mapping_lr)
        loss = F.mse_loss(g.style(z), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(rel_mse=f"{loss.item() / target.var().item():.4f}")


def heldout_codes(cfg: GeneratorConfig, n: int = 8192) -> torch.Tensor:
    """(n, style_dim) fixed standard-normal codes that ``fit_mapping`` never draws."""
    return torch.randn(n, cfg.style_dim, generator=step_generator(cfg.seed + 2, 0))


def mapping_rel_mse(g, cfg: GeneratorConfig) -> float:
    """Mean squared error of the mapping network against w*(z) over ``heldout_codes``, relative to the
    variance of w*."""
    z = heldout_codes(cfg).to(next(g.style.parameters()).device)
    target = target_styles(z, cfg)
    with torch.no_grad():
        return F.mse_loss(g.style(z), target).item() / target.var().item()


def mapping_rel_mse_floor(cfg: GeneratorConfig, draws: int = 64) -> float:
    """The part of ``mapping_rel_mse`` no mapping network can remove: its PixelNorm sees z / |z| only,
    while w* reads z itself, so the best prediction is the mean of w* over the unseen norm (a chi
    distribution, ``draws`` Monte-Carlo samples)."""
    z = heldout_codes(cfg)
    target = target_styles(z, cfg)
    direction = z / z.norm(dim=1, keepdim=True)
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    norms = torch.randn(draws, cfg.style_dim, generator=gen).norm(dim=1)
    best = torch.stack([target_styles(direction * r, cfg) for r in norms]).mean(0)
    return F.mse_loss(best, target).item() / target.var().item()


def load_generator_file(path: str | Path, cfg: GeneratorConfig):
    """(generator in eval mode, latent_avg (style_dim,)) from a generator file of ``cfg``'s architecture
    (``export_generator`` / ``save_generator`` format, or a rosinality .pt), loaded strictly."""
    from models.stylegan2 import load_generator

    g, latent_avg = load_generator(
        path, cfg.size, style_dim=cfg.style_dim, n_mlp=cfg.n_mlp, channels=dict(cfg.channels)
    )
    return g.eval(), latent_avg


def load_init(g, path: str | Path, cfg: GeneratorConfig) -> None:
    """Copy a generator file of ``cfg``'s architecture (``export_generator`` / ``save_generator`` format, or
    a rosinality .pt) into ``g``, strictly; a missing, damaged or unsafe file or another architecture stops
    with one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"--init {path}: no such file (a generator written by `ideface-pretrain-toy stylegan2`, "
            "e.g. models/pretrained/toy_stylegan2.safetensors)"
        )
    try:
        loaded, _ = load_generator_file(path, cfg)
    except ValueError as err:  # unreadable or unsafe: models.weights names the file and the remedy
        raise ConfigError(f"--init {err}") from None
    except RuntimeError as err:  # load_state_dict: "Error(s) in loading state_dict ...:" then the details
        details = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        raise ConfigError(
            f"--init {path}: not a generator of this configuration (size {cfg.size}, style_dim "
            f"{cfg.style_dim}, n_mlp {cfg.n_mlp}, channels {dict(cfg.channels)}): "
            f"{details[0] if details else err}"
        ) from None
    g.load_state_dict(loaded.state_dict())


def train_generator(
    cfg: GeneratorConfig,
    work_dir: Path,
    progress: bool = True,
    stop_at: int | None = None,
    device: str | torch.device = "cpu",
    init: str | Path | None = None,
):
    """Distil the renderer into the toy StyleGAN2 so that G([z]) ~ render(factors_from_gaussian(z)).

    Two regressions through the fixed target styles w*(z) (``target_styles``): the mapping network onto
    w* (``fit_mapping``, first, cheap), and the synthesis network from w* to the rendered image
    (``synthesis_loss``, ``steps`` steps), on ``device``. Returns (generator in eval mode on the CPU,
    latent_avg (style_dim,), losses); ``stop_at`` as in train_arcface (counts synthesis steps).
    ``init``: a generator file to start from when ``work_dir`` holds no checkpoint: both halves continue
    from its weights (``mapping_steps`` 0 keeps its mapping as is); an existing checkpoint is resumed and
    ``init`` ignored.
    """
    run_dir = work_dir / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    g = build_generator(cfg).to(device)
    synthesis = [p for n, p in g.named_parameters() if not n.startswith("style.")]
    opt = torch.optim.Adam(synthesis, lr=cfg.lr, betas=(0.9, 0.99))
    d = build_discriminator(cfg).to(device) if cfg.adversarial_weight > 0 else None
    perceptual = None
    if cfg.perceptual_weight > 0:
        from losses.perceptual import PerceptualLoss

        perceptual = PerceptualLoss.from_backbone("irse", network=cfg.perceptual_net).to(device)
    d_opt = torch.optim.Adam(d.parameters(), lr=cfg.d_lr, betas=(0.0, 0.99)) if d is not None else None
    ckpt_path = run_dir / "ckpt.pt"
    start, losses, mapping_error = 0, [], None
    state = load_checkpoint(ckpt_path)
    if state is not None:
        g.load_state_dict(state["g"])
        opt.load_state_dict(state["opt"])
        start, mapping_error = int(state["step"]), float(state["mapping_rel_mse"])
        # a distillation checkpoint continued with the adversarial term starts a fresh discriminator
        if d is not None and "d" in state:
            d.load_state_dict(state["d"])
            d_opt.load_state_dict(state["d_opt"])
        if init is not None:
            tqdm.write(f"[{cfg.name}] resuming {ckpt_path} at step {start}; --init {init} is not used")
    elif init is not None:
        load_init(g, init, cfg)
        tqdm.write(f"[{cfg.name}] started from {init}: mapping relative MSE {mapping_rel_mse(g, cfg):.4f}")
    run = start_wandb(cfg.name, asdict(cfg), run_dir)
    if mapping_error is None:  # a new run: fit the mapping first (continuing --init's)
        fit_mapping(g, cfg, progress)
        mapping_error = mapping_rel_mse(g, cfg)
        tqdm.write(f"[{cfg.name}] mapping fitted: held-out relative MSE {mapping_error:.4f}")
    if run is not None:
        run.summary["mapping_rel_mse"] = mapping_error
    fixed_z = torch.randn(8, cfg.style_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    g.train()
    end = min(cfg.steps, stop_at or cfg.steps)
    bar = tqdm(range(start, end), initial=start, total=cfg.steps, desc=cfg.name, disable=not progress)
    for step in bar:
        z, real, labels = generator_batch(cfg, step_generator(cfg.seed, step), device)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, cfg.steps, cfg.lr)
        skips = skip_images(g, target_styles(z, cfg))
        weight = part_weights(labels, cfg.part_weight) if cfg.part_weight > 0 else None
        loss = synthesis_loss(skips, real, cfg.gradient_weight, weight)
        log = {"loss": loss.item(), "psnr": psnr(skips[cfg.size].detach(), real).mean().item()}
        if perceptual is not None:
            feature_loss = perceptual(skips[cfg.size], real)
            loss = loss + cfg.perceptual_weight * feature_loss
            log["feature_loss"] = feature_loss.item()
        if d is not None:
            log.update(
                discriminator_step(
                    d, d_opt, real, skips[cfg.size], cfg.r1_gamma, cfg.r1_every if step % cfg.r1_every == 0 else 0
                )
            )
            d.requires_grad_(False)
            g_adv = F.softplus(-d(skips[cfg.size])).mean()
            d.requires_grad_(True)
            loss = loss + cfg.adversarial_weight * g_adv
            log["g_adv"] = g_adv.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{log['loss']:.4f}", psnr=f"{log['psnr']:.2f}")
        done = step + 1
        if done % cfg.sample_every == 0 or done == cfg.steps:
            sample_grid(g, fixed_z, run_dir / f"samples_{done:06d}.png", cfg.size)
            tqdm.write(f"[{cfg.name}] step {done}: loss {loss.item():.4f} psnr {log['psnr']:.2f}")
        if run is not None:
            run.log(log, step=done)
        if done % cfg.ckpt_every == 0 or done == end:
            adversary = {"d": d.state_dict(), "d_opt": d_opt.state_dict()} if d is not None else {}
            save_atomic(
                {
                    "g": g.state_dict(),
                    "opt": opt.state_dict(),
                    "step": done,
                    "mapping_rel_mse": mapping_error,
                    **adversary,
                },
                ckpt_path,
            )
    if run is not None:
        run.finish()
    g = g.cpu().eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        latent_avg = g.mean_latent(10_000)[0]
    return g, latent_avg, losses


def export_generator(g, latent_avg: torch.Tensor, name: str, out_dir: Path) -> dict[str, Path]:
    """Write ``<name>.safetensors``: flat ``g_ema.<key>`` fp16 tensors and ``latent_avg`` (load_generator)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.safetensors"
    flat = {f"g_ema.{k}": v for k, v in fp16_state(g).items()}
    flat["latent_avg"] = latent_avg.detach().reshape(-1).half().contiguous()
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata={"format": "pt", "arch": "stylegan2.Generator"})
    return {"safetensors": path}
