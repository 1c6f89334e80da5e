import pytest
import torch

from models.irse import Backbone
from models.lpips_network import make_lpips
from models.weights import MissingWeightsError


def test_alex_without_weights_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # the registry looks in $TORCH_HOME/hub/checkpoints
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        make_lpips("alex")


def test_unknown_backbone_and_missing_network():
    with pytest.raises(ValueError, match="alex, irse"):
        make_lpips("vgg")
    with pytest.raises(ValueError, match="network="):
        make_lpips("irse")


def test_the_old_name_of_the_irse_backbone_builds_the_same_network():
    """Run folders' config.yaml (the shipped toy encoder's too) say 'toy' for 'irse'."""
    torch.manual_seed(0)
    net = Backbone(input_size=32, stage_channels=(8, 8, 16, 16), stage_units=(1, 1, 1, 1)).eval()
    x, y = torch.rand(2, 2, 3, 32, 32) * 2 - 1
    new, old = make_lpips("irse", network=net), make_lpips("toy", network=net)
    assert old.L == new.L == 4 and torch.equal(old(x, y), new(x, y)) and (new(x, y) > 0).all()
