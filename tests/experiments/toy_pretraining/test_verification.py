"""LFW-style verification accuracy."""

import torch

from experiments.toy_pretraining.verification import verification_accuracy


def test_verification_accuracy():
    same, diff = torch.linspace(0.6, 0.9, 50), torch.linspace(-0.2, 0.3, 50)
    assert verification_accuracy(same, diff) == 1.0
    noise = torch.rand(200, generator=torch.Generator().manual_seed(0))
    assert 0.3 < verification_accuracy(noise[:100], noise[100:]) < 0.7


def test_identity_report_renders_at_the_network_s_input_size():
    """A 16-px recogniser (not the world's size) is probed with 16-px photos (and their LR contours at the world's
    LR size)."""
    from experiments.toy_pretraining.verification import identity_report, report_photos
    from models.irse import Backbone

    torch.manual_seed(0)
    net = Backbone(16, mode="ir_se", stage_channels=(8, 8, 16, 16), stage_units=(1, 1, 1, 1), embedding_dim=8).eval()
    report = identity_report(net, n_identities=6)
    assert report["identities"] == 6 and -1 <= report["lr_sim_same"] <= 1
    assert report_photos(6, size=16)["a"].shape == (6, 3, 16, 16)
