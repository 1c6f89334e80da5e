"""What every toy pretraining run shares: replayable step RNGs, the lr schedule and atomic checkpoints."""

import pytest
import torch

from experiments.toy_pretraining.training import cosine_lr, load_checkpoint, save_atomic, step_generator


def test_a_step_draws_the_same_numbers_whenever_it_runs():
    first = torch.randn(5, generator=step_generator(3, 17))
    assert torch.equal(first, torch.randn(5, generator=step_generator(3, 17)))
    assert not torch.equal(first, torch.randn(5, generator=step_generator(3, 18)))
    assert not torch.equal(first, torch.randn(5, generator=step_generator(4, 17)))


def test_cosine_lr_warms_up_linearly_then_decays_to_zero():
    lrs = [cosine_lr(step, 100, 1.0) for step in range(101)]  # warm-up: min(50, 100 // 10) = 10 steps
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[100] == pytest.approx(0.0, abs=1e-12)
    assert cosine_lr(0, 1000, 2.0, warmup=4) == pytest.approx(0.5)


def test_a_checkpoint_is_written_whole_and_read_back(tmp_path):
    path = tmp_path / "ckpt.pt"
    assert load_checkpoint(path) is None
    save_atomic({"step": 7, "w": torch.arange(3.0)}, path)
    state = load_checkpoint(path)
    assert state["step"] == 7 and torch.equal(state["w"], torch.arange(3.0))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind
