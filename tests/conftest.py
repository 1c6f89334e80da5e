"""Suite-wide settings: W&B offline in a temp folder, CUDA tests skipped without a GPU."""

import os

import pytest
import torch


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
