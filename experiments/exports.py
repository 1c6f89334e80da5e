"""A trained run's export, as training writes it (``EncoderMethod.export``) and inference reads it: the folder
holding ``encoder.safetensors`` + ``config.yaml``, its config validated, and the generator fingerprint the
encoder file records. ``experiments.pipeline.load_pipeline`` builds a model from them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; ``str(err)`` is one line saying what is missing and why."""


def find_final(checkpoint) -> Path:
    """A run folder, its ``final/`` folder or a file inside it -> the folder holding the export."""
    path = Path(checkpoint).expanduser()
    if path.is_file():
        if path.suffix in (".pt", ".pth", ".ckpt"):
            raise CheckpointError(
                f"{path}: a .pt file is not supported: official pSp/ReStyle checkpoints have no identity "
                "input (their encoders see the contour only), so they cannot drive identity-guided "
                "generation; pass a run folder trained here (with final/encoder.safetensors)"
            )
        path = path.parent
    for folder in (path / "final", path):
        if (folder / "encoder.safetensors").is_file() and (folder / "config.yaml").is_file():
            return folder
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist (pass a run folder, its final/ folder, or 'toy')")
    raise CheckpointError(
        f"{path}: no final/encoder.safetensors + final/config.yaml (a run folder "
        "gets them when training finishes; checkpoints/step_<n>/ states are for resuming)"
    )


def load_run_config(folder: Path):
    """The exported ``config.yaml`` validated against the config schema (a struct DictConfig)."""
    from experiments.config import read_saved_config
    from experiments.config_schema import ConfigError, validate

    try:
        cfg = read_saved_config(folder / "config.yaml")
        validate(cfg)
    except ConfigError as err:
        raise CheckpointError(f"{folder / 'config.yaml'}: {err}") from None
    except Exception as err:  # omegaconf/yaml errors: one line with the file
        raise CheckpointError(f"{folder / 'config.yaml'}: {str(err).splitlines()[0]}") from None
    return cfg


def recorded_generator(encoder_file) -> str | None:
    """The generator fingerprint an exported ``encoder.safetensors`` records (``EncoderMethod.export``),
    or None for files exported before encoders recorded it."""
    from safetensors import SafetensorError, safe_open

    from models.weights import unreadable_error

    try:
        with safe_open(str(encoder_file), framework="pt") as f:
            return (f.metadata() or {}).get("generator")
    except SafetensorError as err:
        raise unreadable_error(encoder_file, err) from None


def read_encoder_state(encoder_file) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """An exported ``encoder.safetensors`` -> (the encoder's state dict, its keys without ``encoder.``; the
    inverter's ``latent_avg`` (style_dim,), or None when the file has none). Anything else in the file, or no
    encoder tensor at all, is a :class:`CheckpointError`."""
    from models.weights import load_state_file

    state = load_state_file(encoder_file)
    encoder_state = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    stray = sorted(k for k in state if not k.startswith("encoder.") and k != "latent_avg")
    if stray or not encoder_state:
        raise CheckpointError(
            f"{encoder_file}: expected 'encoder.*' tensors and 'latent_avg' (what training "
            f"exports), got {stray[:3] or 'no encoder tensors'}"
        )
    return encoder_state, state.get("latent_avg")
