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

Every source is validated against the schema (``experiments.config_schema``); a bad key, a bad type, an
unknown preset or a malformed token raises :class:`~experiments.config_schema.ConfigError`, whose message is one line
naming the key, what is allowed and the file (or argument) it came from.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.config_schema import RETIRED_KEYS, Config, ConfigError, DataConfig, validate
from experiments.world import DATASETS

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "experiments" / "configs"
ABLATION_DIR = REPO_ROOT / "ablations"
# Groups whose presets also set the top-level key of the same name (``world=toy`` sets cfg.world).
NAMED_GROUPS = ("world", "method", "ablation")


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
    (the dataset class's ``RENAMED_KEYS``) are read as their ``data.options`` names, and the schema's
    ``RETIRED_KEYS`` are dropped."""
    node = _load_yaml(Path(path))
    for dotted in RETIRED_KEYS:
        parent, _, leaf = dotted.rpartition(".")
        section = OmegaConf.select(node, parent)
        if OmegaConf.is_dict(section) and leaf in section:
            section.pop(leaf)
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
