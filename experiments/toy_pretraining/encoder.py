"""Ship the toy IDE encoder: the paper's full model on the toy world (``ablation=pretrained_id``, the
Ours row), trained by ``experiments/run.py``'s recipe unless a finished run is given, its ``final/``
exported in fp16 to ``<out-dir>/toy_ide/`` (``encoder.safetensors`` + ``config.yaml``); it needs the
toy ArcFaces and generator first."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from experiments.config_schema import Config
from experiments.toy_pretraining.export import fp16_state, print_hashes
from ops.atomic_write import atomic_path

# the shipped encoder's recipe: the converged tables' Ours row (the paper's full model, recipe=toy_long:
# a cosine lr decay over as many steps as the rows' validation curves need to level off), seed 0; run
# history in models/pretrained/README.md
RUN_ARGS = ("ablation=pretrained_id", "recipe=toy_long")


def ship_encoder(out_dir: Path, run: Path | None = None, seed: int = 0) -> dict:
    """Train the toy run (``seed``), or take the finished ``run`` folder, and export its ``final/`` to
    ``out_dir/toy_ide/`` with the generator fingerprint; returns {"name", "run", "sha256"}."""
    from safetensors.torch import save_file

    from experiments.exports import CheckpointError, recorded_generator
    from models.weights import load_state_file

    if run:
        final = Path(run) / "final"
    else:
        from experiments.config import load_config
        from experiments.train import train

        final = train(load_config([*RUN_ARGS, f"seed={seed}"])) / "final"
    if not (final / "encoder.safetensors").is_file():
        raise CheckpointError(
            f"{final}: no encoder.safetensors (is the run finished? pass the run folder of a finished run)"
        )
    out = Path(out_dir) / "toy_ide"
    out.mkdir(parents=True, exist_ok=True)
    source = final / "encoder.safetensors"
    state = fp16_state(load_state_file(source))
    generator = recorded_generator(source)
    if generator is None:
        # exported before encoders recorded their generator: stamp the one its config names today
        from experiments.exports import load_run_config
        from experiments.world import load_frozen_generator
        from models.weights import state_fingerprint

        generator = state_fingerprint(load_frozen_generator(load_run_config(final), torch.device("cpu"))[0])
        print(
            f"{source}: no generator fingerprint recorded; stamping {generator}, the generator its "
            "config names now (retrain the run if that generator changed since)"
        )
    with atomic_path(out / "encoder.safetensors") as tmp:
        # one metadata key: byte-reproducible (methods.export)
        save_file(state, str(tmp), metadata={"generator": generator})
    # the run's output folder is a path on the machine that trained it, and how it was launched (reproduce.py
    # launches with resume=auto) is that run's: neither means anything where the file ships
    config = OmegaConf.load(final / "config.yaml")
    config.output_dir, config.resume = Config.output_dir, Config.resume
    (out / "config.yaml").write_text(OmegaConf.to_yaml(config))
    hashes = print_hashes({"encoder": out / "encoder.safetensors"})
    return {"name": "toy_ide", "run": str(final.parent), "sha256": hashes}
