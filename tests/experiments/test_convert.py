"""``ideface-convert``: pickles only with --trust-pickle; the written checkpoint and its pixel-difference report."""

import json
import pickle

import pytest
import torch

from experiments import convert
from tests.models.nvlabs_reference import NVlabsGenerator


class Marker:
    """Unpickling this creates a file: evidence of whether the pickle was loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture(scope="module")
def nv():
    torch.manual_seed(0)
    return NVlabsGenerator().eval()


def test_cli_refuses_pickles_without_trust(tmp_path):
    marker = tmp_path / "code_ran"
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"G_ema": Marker(str(marker))}, f)
    with pytest.raises(SystemExit, match="--trust-pickle"):
        convert.run([str(tmp_path / "evil.pkl"), str(tmp_path / "out.pt")])
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_cli_converts_trusted_pickle_and_reports_pixel_difference(nv, tmp_path, capsys):
    with open(tmp_path / "net.pkl", "wb") as f:
        pickle.dump({"G_ema": nv}, f)
    report = convert.run([str(tmp_path / "net.pkl"), str(tmp_path / "out.pt"), "--trust-pickle"])
    assert json.loads(capsys.readouterr().out)["max_pixel_difference"] == report["max_pixel_difference"]
    assert report["max_pixel_difference"] < 1e-4
    ckpt = torch.load(tmp_path / "out.pt", weights_only=True)
    assert set(ckpt) == {"g_ema", "latent_avg"}
    # an extracted state dict needs no trust and has no runnable source to compare with
    torch.save(nv.state_dict(), tmp_path / "sd.pt")
    report = convert.run([str(tmp_path / "sd.pt"), str(tmp_path / "out2.pt")])
    assert report["max_pixel_difference"] is None
    assert torch.equal(
        torch.load(tmp_path / "out2.pt", weights_only=True)["g_ema"]["conv1.conv.weight"],
        ckpt["g_ema"]["conv1.conv.weight"],
    )
