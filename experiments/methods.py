"""Method plug-ins for the training loop (what one optimisation step does) and the PULSE builder.

Every encoder method (the four Table 2 rows and modified pSp) is an iterative inverter from
``models.build``: per batch, for each refinement step, the loss of that step's output is
back-propagated at once (gradients accumulate over the steps, one optimiser step per batch, as
ReStyle does). pSp is the same with one step from the average latent. The trainable module is the
encoder alone: the generator stays frozen inside the inverter and is never ``prepare``d.
"""

from __future__ import annotations

import contextlib

import torch
from omegaconf import DictConfig
from safetensors.torch import save_file

from experiments.config import to_yaml
from experiments.config_schema import ConfigError
from experiments.world import World, load_frozen_generator
from models.build import EVAL_ONLY


def build_objective(cfg: DictConfig, device: torch.device):
    """Eq. (6) with the config's weights and the world's frozen perceptual and ArcFace networks."""
    from losses import Objective

    return Objective.from_config(cfg.loss, weights_root=cfg.weights_root).to(device)


def compile_networks(*networks: torch.nn.Module | None) -> None:
    """``train.compile`` / ``pulse.compile``: torch.compile (inductor, default mode) each network given (None
    skipped) in place, with ``nn.Module.compile``, so state-dict keys, checkpoints and exports are unchanged."""
    networks = [n for n in networks if n is not None]
    if any(p.device.type == "cpu" for n in networks for p in n.parameters()):
        _require_cpu_compiler()
    for network in networks:
        network.compile()


def _require_cpu_compiler() -> None:
    """Inductor builds its CPU kernels with a C++ compiler: without one, say so now in one line, not in a
    compiler traceback at the first step."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # a torch without this helper: inductor reports a missing compiler itself
        return
    try:
        get_cpp_compiler()
    except Exception as err:  # inductor's InvalidCxxCompiler (its message is several lines)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(
            f"train.compile / pulse.compile on the CPU needs the C++ compiler inductor builds its kernels with "
            f"({first}): install g++ (or point $CXX at one), or set the knob to false"
        ) from None


class EncoderMethod:
    """ReStyle baseline, IDE rows and modified pSp: an encoder trained through a frozen generator.

    model: the IterativeInverter (encoder + frozen generator); objective: eq. (6); world: where the data
    comes from (None when the caller feeds batches itself, as the training benchmark does).
    """

    def __init__(self, cfg: DictConfig, model: torch.nn.Module, objective: torch.nn.Module, world: World | None = None):
        self.cfg = cfg
        self.world = world
        self.model = model
        self.objective = objective
        self.n_iters = cfg.model.n_iters
        # The whole inverter is prepared so each refinement step goes through the (DDP) forward;
        # the generator inside it has no trainable parameter, so nothing of it is optimised or reduced.
        self.trainable = self.model
        self.trainable_module = self.model
        if cfg.train.compile:  # every network a training step runs; the glue between them stays eager
            perceptual, identity = objective.perceptual, objective.identity
            compile_networks(
                model.encoder,
                model.decoder,
                perceptual.net.net if perceptual is not None else None,  # the LPIPS trunk (features() runs it)
                identity.embedder if identity is not None else None,
            )

    def attach(self, prepared: torch.nn.Module) -> None:
        self.trainable_module = prepared

    def _steps(self, module, batch: dict, randomize_noise: bool | None = None):
        from models.inversion import iterate

        return iterate(module, batch["contour"], batch["identity"], self.n_iters, randomize_noise)

    def _losses(self, step, targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.objective.losses(step.image_loss_res, targets, w=step.w, w_avg=self.model.latent_avg)

    def train_step(self, batch: dict, accelerator) -> dict[str, float]:
        """Forward and backward every refinement step of one batch; returns per-step loss terms.

        The batch's constants are computed once (``train.step_constants``): the loss targets (the target's
        LPIPS features, the identity's ArcFace embedding; bitwise the same losses) and the identity condition
        (E_id's features and the IFMs' modulations, :class:`models.inversion.SharedIdentityCondition`; the
        same gradients up to summation order).
        ``train.step_constants=false`` recomputes both at every step, as before (for comparison)."""
        if not self.cfg.train.step_constants:
            return self._train_step_recomputing(batch, accelerator)
        from models.inversion import SharedIdentityCondition

        module, n = self.trainable_module, self.n_iters
        targets = self.objective.targets(batch["target"], batch["identity"])
        shared = None
        if self.model.kind == "ide":
            with accelerator.autocast():  # as inside the prepared forward, where E_id ran before
                shared = SharedIdentityCondition(self.model.encoder, batch["identity"], n)
        logs: dict[str, float] = {}
        total, step = 0.0, None
        for t in range(n):
            # only the last step's backward reaches everything (E_id through the shared features): the
            # gradients of the others accumulate locally and are synchronised with it
            with accelerator.no_sync(module) if t < n - 1 else contextlib.nullcontext():
                (step,) = module(
                    batch["contour"],
                    batch["identity"],
                    n_iters=1,
                    start=step,
                    randomize_noise=self.cfg.model.randomize_noise,
                    identity_condition=shared.for_step(t) if shared is not None else None,
                )
                loss, terms = self._losses(step, targets)
                accelerator.backward(loss)
            total += loss.item()
            logs.update({f"step{t + 1}/{k}": v.item() for k, v in terms.items()})
        logs["loss"] = total / n
        return logs

    def _train_step_recomputing(self, batch: dict, accelerator) -> dict[str, float]:
        """The step of ``train.step_constants=false``: every refinement step recomputes the identity condition
        (E_id's features too unless E_id is frozen) and the loss targets (the objective's forward)."""
        logs: dict[str, float] = {}
        total = 0.0
        for t, step in enumerate(self._steps(self.trainable_module, batch, self.cfg.model.randomize_noise)):
            loss, terms = self.objective(
                step.image_loss_res, batch["target"], identity=batch["identity"], w=step.w, w_avg=self.model.latent_avg
            )
            accelerator.backward(loss)
            total += loss.item()
            logs.update({f"step{t + 1}/{k}": v.item() for k, v in terms.items()})
        logs["loss"] = total / self.n_iters
        return logs

    @torch.no_grad()
    def validation(self, batch: dict) -> tuple[list[torch.Tensor], dict[str, float]]:
        dev = self.model.latent_avg.device
        batch = {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        images, logs = [], {}
        targets = self.objective.targets(batch["target"], batch["identity"])
        for t, step in enumerate(self._steps(self.model, batch)):
            loss, terms = self._losses(step, targets)
            images.append(step.image_loss_res.cpu())
            logs.update({f"step{t + 1}/{k}": v.item() for k, v in terms.items()})
            logs[f"step{t + 1}/loss"] = loss.item()
        return images, logs

    @torch.no_grad()
    def outputs(self, contour: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """The last refinement step's image (B, 3, G, G) of the (unwrapped) model, in eval mode."""
        *_, last = self._steps(self.model, {"contour": contour, "identity": identity}, randomize_noise=False)
        return last.image

    def export(self, model: torch.nn.Module, out_dir) -> None:
        """Final weights for evaluate/generate: the encoder's ``encoder.safetensors`` (plus the inverter's
        ``latent_avg``; its metadata ``generator`` holds the frozen generator's ``state_fingerprint``, which
        ``load_pipeline`` checks) and the resolved config beside them."""
        from models.weights import state_fingerprint

        out_dir.mkdir(parents=True, exist_ok=True)
        state = {f"encoder.{k}": v.detach().cpu().contiguous() for k, v in model.encoder.state_dict().items()}
        state["latent_avg"] = model.latent_avg.detach().cpu().contiguous()
        # one metadata key: safetensors writes the map in hash order, so two keys make identical exports differ
        save_file(state, str(out_dir / "encoder.safetensors"), metadata={"generator": state_fingerprint(model.decoder)})
        (out_dir / "config.yaml").write_text(to_yaml(self.cfg))


def build_encoder_model(cfg: DictConfig, generator: torch.nn.Module, latent_avg: torch.Tensor | None):
    """``models.build.build_model`` for run config ``cfg``: the encoder of ``cfg.model`` for ``cfg.data``'s
    contours (channels by modality, ``data.input_size``) around the frozen ``generator``, its initialisation
    files resolved under ``cfg.weights_root``. -> IterativeInverter, on the CPU."""
    from data.conditions import condition_channels
    from models.build import build_model

    return build_model(
        cfg.model,
        generator,
        condition_channels(cfg.data.condition),
        latent_avg=latent_avg,
        input_size=cfg.data.input_size,
        weights_root=cfg.weights_root,
    )


def build_method(cfg: DictConfig, device: torch.device) -> EncoderMethod:
    """The method of ``cfg`` with its world's frozen networks and data."""
    if cfg.model.kind in EVAL_ONLY:
        raise ConfigError(
            f"method={cfg.model.kind} has nothing to train (PULSE optimises per pair, a trivial answer needs no "
            f"model): run 'python experiments/evaluate.py method={cfg.model.kind}' instead"
        )
    world = World(cfg, device)
    model = build_encoder_model(cfg, world.generator, world.latent_avg).to(device)
    return EncoderMethod(cfg, model, build_objective(cfg, device), world)


def build_pulse(cfg: DictConfig, device: torch.device):
    """``models.pulse.Pulse`` (modified PULSE, Table 1's optimisation baseline) from the run config: the
    world's frozen generator, its cached Gaussian fit, the ``loss.id_network`` ArcFace with ``loss.id_crop``,
    and the ``pulse`` section's knobs."""
    from losses.identity import PSP_CROP, IdentityLoss
    from models.irse import load_arcface
    from models.pulse import Pulse, PulseConfig, gaussian_fit
    from models.weights import resolve_path

    if cfg.data.condition != "lr":
        raise ValueError(f"PULSE is defined for LR contours only (data.condition=lr), not '{cfg.data.condition}'")
    config = PulseConfig.from_section(cfg.pulse)
    generator, _ = load_frozen_generator(cfg, device)
    weights_dir = resolve_path(cfg.generator.weights, cfg.weights_root).parent
    mean, std = gaussian_fit(generator, config.gaussian_fit_samples, seed=0, cache_dir=weights_dir)
    identity = None
    if config.w_id:
        arcface = load_arcface(cfg.loss.id_network, root=cfg.weights_root)
        identity = IdentityLoss(arcface, crop=cfg.loss.get("id_crop") or PSP_CROP)
    pulse = Pulse(generator, mean, std, identity, config, lr_size=cfg.data.lr_size).to(device)
    if config.compile:  # on the device, so the compiler check looks at where the networks run
        compile_networks(pulse.generator, identity.embedder if identity is not None else None)
    return pulse
