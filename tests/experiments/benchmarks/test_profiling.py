import pytest
import torch
import torch.nn.functional as F

from experiments.benchmarks.profiling import step_flops


def test_profile_attributes_the_step_to_modules_and_ops(bench):
    result = bench(["profile", "--row", "input_latent", "--batch", "2", "--set", "model.n_iters=2", "--top", "5"])
    fwd, bwd = result["forward_ms_by_module"], result["backward_ms_by_module"]
    for part in ("generator", "encoder.body", "encoder.identity", "encoder.ifms", "loss.perceptual", "loss.identity"):
        assert fwd[part] > 0, part
    for part in ("generator", "encoder.body", "loss.perceptual"):  # backprop reaches them all
        assert bwd[part] > 0, part
    assert len(result["forward_ms_by_op"]) == 5 and "ConvolutionBackward0" in result["backward_ms_by_node"]
    assert result["profiled_forward_ms"] == pytest.approx(sum(fwd.values()), abs=1)
    assert result["gflop_per_step"] > 0 and 0 < result["fraction_of_peak"]
    assert result["achieved_gflop_s"] == pytest.approx(result["gflop_per_step"] / result["seconds_per_step"], rel=0.02)


def test_step_flops_count_grouped_conv_weight_gradients_right():
    """A grouped conv's weight gradient costs its forward: torch's own formula would count groups x that."""
    x = torch.randn(1, 8 * 4, 6, 6, requires_grad=True)
    w = torch.randn(8 * 5, 4, 3, 3, requires_grad=True)
    forward = 2 * (8 * 5) * 4 * 9 * 36  # multiply-adds of the forward, x2

    def fwd_bwd():
        F.conv2d(x, w, padding=1, groups=8).sum().backward()

    assert step_flops(fwd_bwd) == 3 * forward  # forward, input gradient, weight gradient
