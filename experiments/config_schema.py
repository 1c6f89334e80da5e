"""The run config's schema: its dataclasses (a YAML key not in them is an error), the allowed choices of
its string values, the ranges of its numeric ones, and :func:`validate`, the checks types alone cannot
express. ``experiments.config`` builds configs over this schema from presets and overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from data.conditions import CONDITIONS
from data.pairs import PAIRING_MODES
from experiments.schedule import LR_DECAYS
from experiments.world import DATASETS, dataset_options
from losses.identity import PSP_CROP
from losses.objective import LossConfig
from metrics.suite import FID_DETECTORS
from models.build import INITS, KINDS, ModelConfig
from models.lpips_network import BACKBONES as LPIPS_BACKBONES
from models.pulse import SCHEDULES, PulseConfig


class ConfigError(ValueError):
    """A bad configuration input; ``str(err)`` is one line that says what to change."""


@dataclass
class GeneratorConfig:
    """The frozen pretrained StyleGAN2 (rosinality layout)."""

    size: int = 1024
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channels: dict[int, int] | None = None  # {resolution: channels}; None = rosinality's
    weights: str = "stylegan2_ffhq_1024"  # registry name or a path
    # gradients through the frozen generator's modulated convs by one input-gradient conv through the shared
    # weight instead of autograd's per-sample weight gradients (models.stylegan2_layers._FrozenModulatedConv): the
    # same images, the same gradients up to rounding, a faster backward; false = autograd's
    factored_backward: bool = True


@dataclass
class DataConfig:
    dataset: str = "toy"  # experiments.world.DATASETS: toy | celebahq
    root: str | None = None  # CelebA-HQ root (CelebAMask-HQ layout), unused by toy
    cache_dir: str | None = None  # prepared label maps / sketches / manifests; None = <output_dir>/cache
    condition: str = "lr"  # lr | sketch | mask
    lr_size: int = 32
    input_size: int = 256
    pairing: str = "same_identity"  # training pairs: same_identity | self | random (data/pairs.py)
    # Test pairs. random (default): identity images of other people, the paper's protocol as we read it
    # (IDSIM "between the input identity face and the output face"; PULSE's IDSIM of 0.02 fits identity
    # photos of other people): IDSIM then measures whether the output takes the identity photo's person.
    # same_identity: other photos of the contour's person, where the contour already shows whom to draw.
    test_pairing: str = "random"
    n_identity_per_contour: int = 10
    manifest_seed: int = 0  # the test manifest's draw; fixed so every seed of a suite shares it
    num_workers: int = 0
    # the dataset's own settings, checked against its class's Options (experiments.world.dataset_options);
    # unset ones take that dataclass's defaults
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    max_steps: int = 110_000
    batch_size: int = 8  # global: per-process batch x processes x grad_accum
    grad_accum: int = 1
    lr: float = 1e-4
    # linear warm-up of the lr over the first N optimisation steps (0 = the paper's constant lr)
    warmup_steps: int = 0
    # after the warm-up: none (the paper's constant lr) | cosine (half a cosine down to 0 at max_steps)
    lr_decay: str = "none"
    mixed_precision: str = "no"  # no | fp16 | bf16
    # compute a batch's constants once for all its refinement steps (loss targets, E_id's features; see
    # EncoderMethod.train_step); false recomputes them at every step, the older and slower step
    step_constants: bool = True
    # torch.compile (inductor, default mode) the networks a training step runs (EncoderMethod): a faster step
    # that rounds differently, after a compilation of a minute or more per process (less from inductor's
    # on-disk cache); off by default, so a short run does not pay it and results stay bitwise eager
    compile: bool = False
    # torch threads per process on a CPU device: None = as launched (`accelerate launch` pins 1 unless
    # given --num_cpu_threads_per_process), 0 = this machine's cores / local processes, N = N
    cpu_threads: int | None = None
    log_every: int = 10
    val_every: int = 1000
    val_batch: int = 4
    val_metric_pairs: int = 100  # first test pairs of the validation LPIPS / IDSIM / FID (0 = none)
    ckpt_every: int = 1000
    keep_last: int = 2


@dataclass
class EvalConfig:
    at_end: bool = True
    max_pairs: int | None = None  # None = the whole manifest
    batch_size: int = 8
    n_iters: int | None = None  # None = model.n_iters
    save_images: bool = False
    lpips_backbone: str = "alex"  # models.lpips_network.BACKBONES: alex | irse (on feature_network)
    lpips_resolution: int = 256
    fid_detector: str = "inception"  # metrics.suite.FID_DETECTORS: inception | embedding (of feature_network)
    fid_reference: str = "celebahq_train"  # name of the real set in the cache key
    fid_reference_size: int = 30000  # real images (train split targets) in the FID reference set
    feature_network: str | None = None  # the IR-SE of lpips_backbone=irse and fid_detector=embedding
    idsim_model: str = "arcface_onnx"  # registry name of an insightface recognition ONNX
    # dlib's ResNet recogniser as a second identity judge (metrics/dlib_idsim.py; needs the align extra):
    # dlib_distance and dlib_same_person columns. On in the celebahq world; toy faces are not human faces.
    dlib_judge: bool = False
    id_crop: list[float] = field(default_factory=lambda: list(PSP_CROP))  # the IDSIM embedder's crop
    providers: list[str] = field(default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    n_boot: int = 1000  # bootstrap replicates of the LPIPS / IDSIM intervals
    fid_blocks: int = 20  # contour blocks of the FID jackknife interval (fewer when there are fewer chunks)


@dataclass
class WandbConfig:
    mode: str = "offline"  # offline | online | disabled; the WANDB_MODE env var wins
    project: str = "ideface"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    name: str | None = None


@dataclass
class Config:
    world: str = "toy"
    method: str = "ide"
    ablation: str | None = None
    seed: int = 0
    output_dir: str = "runs"
    run_name: str | None = None  # None = <method|ablation>-<world>-<condition>-s<seed>
    # None (a new run: refused in a folder a run has used) | latest (the newest checkpoint; an error when there
    # is none) | auto (the newest checkpoint if any, else a new run) | <checkpoint dir>
    resume: str | None = None
    weights_root: str | None = None  # None = $IDEFACE_WEIGHTS or ~/.cache/ideface/weights
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pulse: PulseConfig = field(default_factory=PulseConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)


# Keys of earlier versions that a saved run config may still hold, dropped when it is read
# (``experiments.config.read_saved_config``); each comment says why that loses nothing.
RETIRED_KEYS = (
    # until session 28: the steps of an IDE encoder whose identity encoder starts from random init; load_config
    # wrote it into train.max_steps before the run saved its config, so max_steps holds the steps it trained
    "train.random_id_max_steps",
)


CHOICES = {
    "model.kind": KINDS,
    "model.identity_init": INITS,
    "model.encoder_init": INITS,
    "pulse.schedule": tuple(SCHEDULES),
    "data.dataset": tuple(DATASETS),
    "data.condition": tuple(CONDITIONS),
    "data.pairing": PAIRING_MODES,
    "data.test_pairing": PAIRING_MODES,
    "train.mixed_precision": ("no", "fp16", "bf16"),
    "train.lr_decay": LR_DECAYS,
    "wandb.mode": ("offline", "online", "disabled"),
    "loss.perceptual": tuple(LPIPS_BACKBONES),
    "eval.lpips_backbone": tuple(LPIPS_BACKBONES),
    "eval.fid_detector": tuple(FID_DETECTORS),
}


def validate(cfg: DictConfig) -> None:
    """Checks that types alone cannot express: choices and required values."""
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"bad value for '{key}': {value!r}; allowed: {', '.join(allowed)}")
    missing = OmegaConf.missing_keys(cfg)
    if missing:
        raise ConfigError(f"missing required value(s): {', '.join(sorted(missing))}; set them as key=value")
    if cfg.data.dataset == "celebahq" and not cfg.data.root:
        raise ConfigError(
            "data.root is required for data.dataset=celebahq: pass data.root=<folder with the "
            "CelebAMask-HQ layout> (see README, 'Real data')"
        )
    check_ranges(cfg)
    try:
        dataset_options(cfg.data)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    # The judge must not be the network the ID loss trains against (a method could score by fitting it):
    # a registry name's ONNX export is '<name>_onnx'.
    loss_net = str(cfg.loss.id_network)
    if str(cfg.eval.idsim_model) in (loss_net, f"{loss_net}_onnx"):
        raise ConfigError(
            f"eval.idsim_model={cfg.eval.idsim_model} is the ID loss's own network "
            f"(loss.id_network={loss_net}); evaluate identity with a different network"
        )


# ---- value ranges -----------------------------------------------------------------------------------------
def _positive(v) -> bool:
    return v > 0


def _non_negative(v) -> bool:
    return v >= 0


def _power_of_two(v) -> bool:
    return v >= 4 and v & (v - 1) == 0


def _optional(check):
    return lambda v: v is None or check(v)


def _crop(v) -> bool:
    return len(v) == 4 and all(0 <= x <= 1 for x in v) and v[0] < v[1] and v[2] < v[3]


def _four_positive(v) -> bool:
    return v is None or (len(v) == 4 and all(x > 0 for x in v))


# (key, check, what the value must be): every numeric schema value a run, an evaluation or PULSE reads
RANGES = [
    *[
        (k, _non_negative, ">= 0")
        for k in (
            "seed",
            "data.manifest_seed",
            "data.num_workers",
            "train.warmup_steps",
            "train.val_metric_pairs",
            "train.keep_last",
            "pulse.eps",
            "pulse.w_l2",
            "pulse.w_geo",
            "pulse.w_id",
            "pulse.n_trainable_noise",
            "pulse.seed",
            "loss.l2",
            "loss.lpips",
            "loss.id",
            "loss.wnorm",
        )
    ],
    *[
        (k, _positive, ">= 1")
        for k in (
            "generator.style_dim",
            "generator.n_mlp",
            "generator.channel_multiplier",
            "model.n_iters",
            "model.encoder_layers",
            "model.ifm_hidden",
            "model.loss_resolution",
            "data.lr_size",
            "data.n_identity_per_contour",
            "train.max_steps",
            "train.batch_size",
            "train.grad_accum",
            "train.log_every",
            "train.val_every",
            "train.val_batch",
            "train.ckpt_every",
            "eval.batch_size",
            "eval.lpips_resolution",
            "eval.fid_reference_size",
            "eval.n_boot",
            "eval.fid_blocks",
            "pulse.steps",
            "pulse.gaussian_fit_samples",
        )
    ],
    ("train.lr", _positive, "> 0"),
    ("pulse.lr", _positive, "> 0"),
    ("generator.size", _power_of_two, "a power of two >= 4"),
    ("data.input_size", _power_of_two, "a power of two >= 4"),
    ("model.n_ifm_per_block", _optional(_positive), "null or >= 1"),
    ("model.stage_channels", _four_positive, "null or 4 positive channel counts"),
    ("model.stage_units", _four_positive, "null or 4 positive unit counts"),
    ("train.cpu_threads", _optional(_non_negative), "null or >= 0"),
    ("eval.max_pairs", _optional(_positive), "null or >= 1"),
    ("eval.n_iters", _optional(_positive), "null or >= 1"),
    ("loss.id_crop", _crop, "[x0, x1, y0, y1] fractions in [0, 1] with x0 < x1, y0 < y1"),
    ("eval.id_crop", _crop, "[x0, x1, y0, y1] fractions in [0, 1] with x0 < x1, y0 < y1"),
]


def check_ranges(cfg: DictConfig) -> None:
    """Every value of :data:`RANGES` in its range, and the sizes consistent; else one-line ConfigError."""
    for key, check, must in RANGES:
        value = OmegaConf.select(cfg, key)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value)
        if not check(value):
            raise ConfigError(f"bad value for '{key}': {value!r}; it must be {must}")
    if cfg.data.lr_size > cfg.data.input_size:
        raise ConfigError(
            f"data.lr_size={cfg.data.lr_size} is larger than data.input_size={cfg.data.input_size}; "
            "the LR contour is a downsampled input"
        )
