"""Configuration: YAML presets merged over a dataclass schema (omegaconf, no Hydra).

A run's config is built from, in this order:

1. ``experiments/configs/base.yaml``;
2. the default world and method presets named in the base (``world: toy``, ``method: ide``) unless
   the command line names its own;
3. the presets named on the command line, in argv order: a token ``group=name`` whose file
   ``<group folder>/<name>.yaml`` exists (``ablation=`` reads ``ablations/<name>.yaml``; ``world=``,
   ``method=`` and other groups read ``experiments/configs/<group>/<name>.yaml``);
   a preset builds on others by naming them in its ``presets:`` list (``presets: [method=restyle]``),
   which are merged before it, so no preset repeats another;
4. dotted overrides such as ``train.lr=3e-4``.

Every source is validated against :class:`Config`; a bad key, a bad type, an unknown preset or a
malformed token raises :class:`ConfigError`, whose message is one line naming the key, what is
allowed and the file (or argument) it came from.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

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

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "experiments" / "configs"
ABLATION_DIR = REPO_ROOT / "ablations"
# Groups whose presets also set the top-level key of the same name (``world=toy`` sets cfg.world).
NAMED_GROUPS = ("world", "method", "ablation")


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


def group_dir(group: str) -> Path:
    return ABLATION_DIR if group == "ablation" else CONFIG_DIR / group


def available_presets(group: str) -> list[str]:
    """Preset names of ``group`` (the table suites are in ``ablations/tables/``, apart from the presets)."""
    d = group_dir(group)
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.yaml"))


def _explain(err: OmegaConfBaseException, source: str) -> ConfigError:
    """Turn an omegaconf error into one line: the key, what is allowed, the source."""
    key = getattr(err, "full_key", None) or ""
    msg = str(err).splitlines()[0].strip()
    if type(err).__name__ == "ConfigKeyError":
        parent, _, leaf = key.rpartition(".")
        node = Config()
        for part in filter(None, parent.split(".")):
            node = getattr(node, part, None)
        allowed = [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) else []
        guess = difflib.get_close_matches(leaf, allowed, n=1)
        hint = f"did you mean '{(parent + '.' if parent else '') + guess[0]}'? " if guess else ""
        return ConfigError(
            f"unknown config key '{key}' (from {source}); {hint}allowed under "
            f"'{parent or '<top>'}': {', '.join(allowed)}"
        )
    return ConfigError(f"bad value for '{key}' (from {source}): {msg}")


def _merge(cfg: DictConfig, other: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, other)
    except OmegaConfBaseException as err:
        raise _explain(err, source) from None


def _load_yaml(path: Path) -> DictConfig:
    try:
        node = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError and friends: report the file, not a traceback
        raise ConfigError(f"cannot parse {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path} must hold a mapping of config keys, not {type(node).__name__}")
    return node


def _preset(group: str, name: str) -> tuple[DictConfig, Path]:
    path = group_dir(group) / f"{name}.yaml"
    if not path.is_file() or name not in available_presets(group):
        avail = available_presets(group)
        guess = difflib.get_close_matches(name, avail, n=1)
        hint = f" (did you mean '{guess[0]}'?)" if guess else ""
        raise ConfigError(
            f"unknown {group} preset '{name}'{hint}; available: {', '.join(avail) or 'none'} (in {group_dir(group)})"
        )
    node = _load_yaml(path)
    if group in NAMED_GROUPS:
        node[group] = name
    return node, path


def _composed(group: str, name: str, within: tuple[str, ...] = ()) -> list[tuple[DictConfig, Path]]:
    """The preset ``group=name`` after the presets its ``presets:`` list names (each composed the same
    way, in order): the (node, file) pairs to merge, the named preset's own last."""
    node, path = _preset(group, name)
    parents = node.pop("presets", None) or []
    if not OmegaConf.is_list(parents) and not isinstance(parents, list):
        raise ConfigError(f"{path}: 'presets' must be a list of group=name tokens, e.g. [method=restyle]")
    out = []
    for token in parents:
        key, value = _parse_override(str(token))
        if not _is_preset_token(key):
            raise ConfigError(f"{path}: 'presets' names presets (group=name), not the override '{token}'")
        if f"{key}={value}" in (*within, f"{group}={name}"):
            raise ConfigError(
                f"{path}: presets build on each other in a circle: "
                f"{' -> '.join((*within, f'{group}={name}', f'{key}={value}'))}"
            )
        out += _composed(key, value, (*within, f"{group}={name}"))
    return [*out, (node, path)]


def _parse_override(token: str) -> tuple[str, str]:
    if "=" not in token or token.startswith("=") or token.startswith("-"):
        raise ConfigError(
            f"malformed argument '{token}': expected 'group=name' (a preset) or 'dotted.key=value' "
            f"(an override), e.g. ablation=input_latent or train.lr=3e-4"
        )
    key, value = token.split("=", 1)
    if not key.replace(".", "").replace("_", "").isalnum() or ".." in key or key.endswith("."):
        raise ConfigError(f"malformed key '{key}' in argument '{token}'")
    return key, value


def _is_preset_token(key: str) -> bool:
    return "." not in key and (key in NAMED_GROUPS or group_dir(key).is_dir())


def schema() -> DictConfig:
    """:class:`Config`'s defaults as a struct DictConfig: unknown keys are errors, but under
    ``data.options``, whose keys the dataset class checks (:func:`validate`)."""
    cfg = OmegaConf.structured(Config)
    OmegaConf.set_struct(cfg.data.options, False)
    return cfg


def read_saved_config(path: Path) -> DictConfig:
    """A run's saved ``config.yaml`` over :func:`schema`, unvalidated; data keys of earlier versions
    (the dataset class's ``RENAMED_KEYS``) are read as their ``data.options`` names."""
    node = _load_yaml(Path(path))
    data = node.get("data")
    dataset = data.get("dataset", DataConfig.dataset) if OmegaConf.is_dict(data) else None
    if dataset in DATASETS:
        for old, new in DATASETS[dataset]().RENAMED_KEYS.items():
            if old in data:
                data.setdefault("options", {})
                data.options[new] = data.pop(old)
    return _merge(schema(), node, str(path))


def load_config(argv: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Build the validated config from command-line tokens (see module docstring).

    Returns a struct-mode DictConfig typed by :class:`Config`; raises :class:`ConfigError`.
    """
    cfg = schema()
    base_path = CONFIG_DIR / "base.yaml"
    cfg = _merge(cfg, _load_yaml(base_path), str(base_path))
    parsed = [_parse_override(t) for t in argv]
    named = {k for k, _ in parsed if _is_preset_token(k)}
    for group in ("world", "method"):
        if group not in named:
            for node, path in _composed(group, cfg[group]):
                cfg = _merge(cfg, node, str(path))
    overrides = []
    for key, value in parsed:
        if _is_preset_token(key):
            if key == "ablation" and value in ("null", "none", ""):
                continue
            for node, path in _composed(key, value):
                cfg = _merge(cfg, node, str(path))
        else:
            overrides.append((key, value))
    for key, value in overrides:
        cfg = _merge(cfg, OmegaConf.from_dotlist([f"{key}={value}"]), f"the command line '{key}={value}'")
    validate(cfg)
    return cfg


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


def run_name(cfg: DictConfig) -> str:
    """Default run name: ``<ablation or method>-<world>-<condition>-s<seed>``."""
    if cfg.run_name:
        return cfg.run_name
    what = cfg.ablation or cfg.method
    return f"{what}-{cfg.world}-{cfg.data.condition}-s{cfg.seed}"


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_container(cfg: DictConfig) -> dict:
    """Plain dict (for W&B and checkpoints: no OmegaConf objects in pickles)."""
    return OmegaConf.to_container(cfg, resolve=True)
