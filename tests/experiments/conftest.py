"""A tiny world for loop tests: real code paths, tiny random networks written to disk in the test.

The toy world's own code (renderer, pairing, conditions, losses, metrics) runs unchanged; only the
pretrained files are replaced by small random ones so the tests neither depend on nor wait for
the shipped toy weights. Below them, the web demo's fixture on the shipped toy encoder.
"""

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

STAGES = ["8", "12", "16", "24"]


def write_tiny_networks(root: Path) -> dict[str, Path]:
    from models.irse import Backbone
    from models.stylegan2 import Generator, save_generator

    torch.manual_seed(0)
    root.mkdir(parents=True, exist_ok=True)
    g = Generator(64, style_dim=32, n_mlp=2, channels={4: 32, 8: 16, 16: 16, 32: 8, 64: 8})
    save_generator(root / "g.safetensors", g, g.mean_latent(256)[0])
    arc = Backbone(112, stage_channels=tuple(int(s) for s in STAGES), stage_units=(1, 1, 1, 1)).eval()
    save_file({k: v.contiguous() for k, v in arc.state_dict().items()}, str(root / "arc.safetensors"))
    arc_eval = Backbone(112, stage_channels=(8, 12, 16, 20), stage_units=(1, 1, 1, 1)).eval()
    save_file({k: v.contiguous() for k, v in arc_eval.state_dict().items()}, str(root / "arc_eval.safetensors"))
    torch.onnx.export(
        arc_eval,
        torch.zeros(1, 3, 112, 112),
        str(root / "arc_eval.onnx"),
        input_names=["input"],
        output_names=["embedding"],
        dynamic_axes={"input": {0: "batch"}},
        dynamo=False,
    )
    return {
        "g": root / "g.safetensors",
        "arc": root / "arc.safetensors",
        "arc_eval": root / "arc_eval.safetensors",
        "arc_eval_onnx": root / "arc_eval.onnx",
    }


def two_process_launcher(port: int) -> list[str]:
    """``accelerate launch`` of 2 local processes (the multi-process tests' command prefix) on ``port``."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
    ]


def tiny_overrides(nets: dict[str, Path], out: Path, **extra) -> list[str]:
    """Config tokens for a toy-world run on the tiny networks (a few seconds a step on a CPU)."""
    tokens = {
        "output_dir": out,
        "generator.size": 64,
        "generator.style_dim": 32,
        "generator.n_mlp": 2,
        "generator.weights": nets["g"],
        "generator.channels": "{4: 32, 8: 16, 16: 16, 32: 8, 64: 8}",
        "model.stage_channels": "[" + ",".join(STAGES) + "]",
        "model.stage_units": "[1,1,1,1]",
        "model.identity_weights": nets["arc"],
        "model.ifm_hidden": 8,
        "model.n_iters": 2,
        "model.loss_resolution": 64,
        "model.randomize_noise": "false",
        "data.input_size": 64,
        "data.lr_size": 8,
        "data.options.train_identities": 12,
        "data.options.photos_per_identity": 3,
        "data.options.test_identities": 3,
        "data.options.test_photos_per_identity": 2,
        "data.n_identity_per_contour": 2,
        "loss.id_network": nets["arc"],
        "loss.perceptual_network": nets["arc_eval"],
        "train.max_steps": 4,
        "train.batch_size": 4,
        "train.log_every": 1,
        "train.val_every": 2,
        "train.val_batch": 2,
        "train.val_metric_pairs": 4,
        "train.ckpt_every": 2,
        "train.cpu_threads": 1,
        "eval.at_end": "false",
        "eval.batch_size": 4,
        "eval.feature_network": nets["arc_eval"],
        "eval.idsim_model": nets["arc_eval_onnx"],
        "eval.fid_reference_size": 12,
        "eval.lpips_resolution": 64,
        "eval.n_boot": 50,
    }
    tokens.update(extra)
    return [f"{k}={v}" for k, v in tokens.items()]


@pytest.fixture(scope="session")
def tiny_nets(tmp_path_factory):
    return write_tiny_networks(tmp_path_factory.mktemp("tiny_nets"))


# ---- the web demo on the shipped toy encoder (test_demo_backend, test_demo_app) --------------------------
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """``experiments.demo_backend.Demo`` on the shipped toy checkpoint, with its rendered examples."""
    from experiments.demo_backend import Demo

    # the cascade: the aligner every machine has (dlib, the default where installed, is tested in data/)
    demo = Demo.load("toy", examples_dir=tmp_path_factory.mktemp("examples"), detector="cascade")
    yield demo
    demo.close()


def uploads(row):
    """An example row of the demo -> (mode, contour Upload, identity Uploads)."""
    from experiments.demo_backend import Upload

    mode, contour, *ids = row
    return mode, Upload.of(contour), [Upload.of(p) for p in ids]
