"""Suite-wide settings: W&B offline in a temp folder, CUDA tests skipped without a GPU; the environment
of a script run in a child process (:func:`subprocess_env`)."""

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def subprocess_env(extra: dict | None = None) -> dict:
    """The environment for a command of this tree run in a child process (``python experiments/run.py``,
    ``python -m experiments.demo``, ``accelerate launch``): this checkout first on PYTHONPATH, since the
    scripts import the installed package and an editable install may point at another checkout; and no
    WANDB_SERVICE, which an in-process W&B run earlier in the session exports and which would make the
    child share (and outlive a kill inside) pytest's service."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return {**env, **(extra or {})}


def pytest_configure(config):
    # Tiny tensors: one thread is as fast and avoids oversubscribing small CI machines (child
    # processes inherit the variable).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    os.environ.setdefault("WANDB_SILENT", "true")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _wandb_dir(tmp_path_factory, monkeypatch):
    if "WANDB_DIR" not in os.environ:
        monkeypatch.setenv("WANDB_DIR", str(tmp_path_factory.mktemp("wandb")))
