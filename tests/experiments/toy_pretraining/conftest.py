import pytest


@pytest.fixture(autouse=True)
def no_wandb(monkeypatch):
    """The toy trainings run with W&B off here (an offline run nothing in these tests reads)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
