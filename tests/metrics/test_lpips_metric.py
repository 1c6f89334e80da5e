import pytest
import torch
import torchvision
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from data.toyfaces.render import FACTOR_DIMS, render_gaussian
from metrics.lpips_metric import lpips_distance
from models.irse import Backbone
from models.lpips_network import make_lpips


def _faces(n=2, seed=0):
    """(n, 3, 64, 64) in [-1, 1]: real toy-world faces from the procedural renderer."""
    codes = torch.randn(n, FACTOR_DIMS, generator=torch.Generator().manual_seed(seed))
    return render_gaussian(codes, size=64).image


def _random_feature_net():
    """A fixed random conv net returning 4 feature levels (stand-in for a trained toy network)."""

    class Levels(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.stages = nn.ModuleList(
                nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.LeakyReLU(0.2))
                for c_in, c_out in [(3, 8), (8, 16), (16, 16), (16, 16)]
            )

        def forward(self, x):
            levels = []
            for stage in self.stages:
                x = stage(x)
                levels.append(x)
            return levels

    return Levels()


def _degradations(images):
    """name -> list of increasingly strong degradations of images (B, 3, 64, 64)."""
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    occluded = []
    for side in (8, 16, 24, 32):
        x = images.clone()
        start = 32 - side // 2
        x[:, :, start : start + side, start : start + side] = 0.0
        occluded.append(x)
    return {
        "blur": [gaussian_blur(images, 2 * round(3 * s) + 1, sigma=s) for s in (0.5, 1.0, 2.0, 3.0)],
        "noise": [(images + s * noise).clamp(-1, 1) for s in (0.05, 0.1, 0.2, 0.4)],
        "occlusion": occluded,
    }


@pytest.mark.parametrize("network", ["random_conv", "irse"])
def test_toy_lpips_zero_for_identical_and_monotone_in_degradation(network):
    if network == "irse":
        # The real toy backbone class at a tiny size (random weights): its stage_features are used.
        torch.manual_seed(0)
        net = Backbone(input_size=64, num_layers=50, stage_channels=(8, 8, 16, 16), stage_units=(1, 1, 1, 1))
    else:
        net = _random_feature_net()
    model = make_lpips("irse", network=net)
    assert model.L == 4
    faces = _faces(2)
    assert torch.equal(lpips_distance(faces, faces, model, size=None), torch.zeros(2))
    for name, degraded in _degradations(faces).items():
        # One call for all strengths: (4 * B) pairs -> (4, B).
        distances = lpips_distance(faces.repeat(len(degraded), 1, 1, 1), torch.cat(degraded), model, size=None).view(
            len(degraded), len(faces)
        )
        assert (distances > 0).all(), name
        assert (distances[1:] > distances[:-1]).all(), f"{name}: {distances.T}"


def test_lpips_distance_resizes_and_clips():
    model = make_lpips("irse", network=_random_feature_net())
    faces = _faces(2)
    # Values beyond [-1, 1] are clipped as a saved image would be.
    assert torch.equal(
        lpips_distance(faces, faces * 1.5, model, size=None),
        lpips_distance(faces, (faces * 1.5).clamp(-1, 1), model, size=None),
    )
    upsampled = lpips_distance(faces, faces.flip(-1), model, size=96)
    assert upsampled.shape == (2,) and (upsampled > 0).all()
    with pytest.raises(ValueError, match="shape"):
        lpips_distance(faces, faces[:1], model)


def test_alex_loads_torchvision_state_dict_into_lpips_trunk(tmp_path):
    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet(weights=None)
    torch.save(alexnet.state_dict(), tmp_path / "alexnet-owt-7be5be79.pth")
    model = make_lpips("alex", weights=tmp_path / "alexnet-owt-7be5be79.pth")

    for index, slice_name in [(0, "slice1"), (3, "slice2"), (6, "slice3"), (8, "slice4"), (10, "slice5")]:
        assert torch.equal(getattr(model.net, slice_name)._modules[str(index)].weight, alexnet.features[index].weight)
    # The perceptual linear layers are lpips' shipped v0.1 calibration (non-negative weights).
    assert all((lin.model[-1].weight >= 0).all() for lin in model.lins)
    faces = _faces(2)
    assert torch.equal(lpips_distance(faces, faces, model, size=64), torch.zeros(2))
    blurred = gaussian_blur(faces, kernel_size=9, sigma=2.0)
    distance = lpips_distance(faces, blurred, model, size=64)
    assert distance.shape == (2,) and torch.isfinite(distance).all() and (distance > 0).all()
