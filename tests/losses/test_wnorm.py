import pytest
import torch

from losses import WNormLoss


def test_average_latent_gives_zero_with_finite_gradient():
    w_avg = torch.randn(6)
    w = w_avg.expand(2, 4, 6).clone().requires_grad_(True)
    loss = WNormLoss()(w, w_avg)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(w.grad).all()


def test_known_values_frobenius_unsquared_and_squared():
    w_avg = torch.zeros(1, 3, 4)
    w = torch.zeros(2, 3, 4)
    w[0, 0, 0], w[0, 2, 3] = 3.0, 4.0  # sample 0: Frobenius norm 5 over (n_latent, style_dim)
    w[1, 1, 1] = 1.0  # sample 1: norm 1
    assert WNormLoss()(w, w_avg).item() == pytest.approx(3.0)  # (5 + 1) / 2
    assert WNormLoss(squared=True)(w, w_avg).item() == pytest.approx(13.0)  # (25 + 1) / 2


def test_style_vector_average_broadcasts_over_layers():
    w_avg = torch.randn(5)
    w = w_avg + torch.ones(3, 4, 5)
    assert WNormLoss()(w, w_avg).item() == pytest.approx(20**0.5)
