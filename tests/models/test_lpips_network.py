import pytest

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
