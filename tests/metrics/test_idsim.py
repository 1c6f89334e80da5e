import numpy as np
import pytest
import torch
from insightface.utils.face_align import arcface_dst, norm_crop
from torch import nn

from metrics.idsim import (
    CELEBAHQ_CROP,
    FULL_CROP,
    ArcFaceEmbedder,
    arcface_crop,
    default_providers,
    idsim,
    select_providers,
)


class TinyRecognition(nn.Module):
    """(B, 3, 112, 112) RGB in [-1, 1] -> (B, 32) raw embedding, like an ArcFace ONNX model."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.PReLU(8),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.PReLU(16),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(16 * 16, 32),
        )

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    model = TinyRecognition().eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny_recognition.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, 112, 112),),
        str(path),
        input_names=["data"],
        output_names=["embedding"],
        dynamic_axes={"data": {0: "batch"}},
        dynamo=False,
    )
    return model, path


def _images(n, size=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    return nn.functional.interpolate(low, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


def _torch_embeddings(model, crops_bgr):
    """The same network in torch on the same uint8 BGR crops, preprocessed as insightface does."""
    rgb = torch.from_numpy(crops_bgr[..., ::-1].copy()).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        embeddings = model((rgb - 127.5) / 127.5)
    return nn.functional.normalize(embeddings, dim=1)


def test_idsim_through_insightface_equals_torch(onnx_model):
    model, path = onnx_model
    # A config asking for CUDA first still runs where this onnxruntime has only the CPU provider.
    embedder = ArcFaceEmbedder(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert embedder.model.input_mean == 127.5 and embedder.model.input_std == 127.5
    identity, outputs = _images(3, seed=1), _images(3, seed=2)

    same = idsim(identity, identity.clone(), embedder)
    assert same.shape == (3,) and same.dtype == torch.float32
    assert torch.allclose(same, torch.ones(3), atol=1e-6)

    values = idsim(identity, outputs, embedder)
    expected = (_torch_embeddings(model, arcface_crop(identity)) * _torch_embeddings(model, arcface_crop(outputs))).sum(
        dim=1
    )
    assert torch.allclose(values, expected, atol=1e-4)
    assert (values < 0.9999).all()
    np.testing.assert_allclose(embedder(outputs), _torch_embeddings(model, arcface_crop(outputs)).numpy(), atol=1e-4)


def test_embedder_from_registry_missing_file_and_default_providers(tmp_path):
    from models.weights import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="w600k_r50.onnx"):
        ArcFaceEmbedder.from_registry("arcface_onnx", weights_root=tmp_path)
    providers = default_providers()
    assert providers[-1] == "CPUExecutionProvider"
    assert select_providers(["NoSuchExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="available"):
        select_providers(["NoSuchExecutionProvider"])


def test_crop_is_bgr_uint8_and_honours_the_box():
    red = torch.full((2, 3, 64, 64), -1.0)
    red[:, 0] = 1.0
    crops = arcface_crop(red, crop=FULL_CROP)
    assert crops.shape == (2, 112, 112, 3) and crops.dtype == np.uint8
    assert (crops[..., 2] == 255).all() and (crops[..., :2] == 0).all()
    # Only the box is kept: a bright square exactly on the box fills the crop.
    x = torch.full((1, 3, 100, 100), -1.0)
    x[:, :, 20:60, 30:90] = 1.0
    assert (arcface_crop(x, crop=(0.2, 0.6, 0.3, 0.9)) == 255).all()
    with pytest.raises(ValueError, match="crop"):
        arcface_crop(x, crop=(0.5, 0.4, 0.0, 1.0))


def test_celebahq_crop_follows_the_ffhq_alignment_of_the_arcface_template():
    """Put the ArcFace template landmarks into the crop box of an aligned image: re-applying the
    FFHQ/CelebA-HQ alignment rule to them must give back the whole image (centre 0.5, half-side 0.5)."""
    top, bottom, left, right = CELEBAHQ_CROP
    points = (arcface_dst + 0.5) / 112 * [right - left, bottom - top] + [left, top]
    eye_mid, mouth_mid = points[:2].mean(0), points[3:].mean(0)
    centre = eye_mid + 0.1 * (mouth_mid - eye_mid)
    half_side = max(2 * np.hypot(*(points[1] - points[0])), 1.8 * np.hypot(*(mouth_mid - eye_mid)))
    np.testing.assert_allclose(centre, [0.5, 0.5], atol=2e-3)
    assert half_side == pytest.approx(0.5, abs=2e-3)
    # Close to pSp's empirical ID-loss crop of a 256 image (rows 35:223, columns 32:220).
    assert np.allclose(np.array(CELEBAHQ_CROP) * 256, [35, 223, 32, 220], atol=10)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # insightface's norm_crop uses a deprecated skimage call
def test_fixed_crop_matches_insightface_landmark_alignment():
    """On an aligned 256 image with dots at the template landmarks, our fixed crop and insightface's
    5-point norm_crop (similarity transform to the template) give the same 112x112 image."""
    top, bottom, left, right = CELEBAHQ_CROP
    size = 256
    landmarks = ((arcface_dst + 0.5) / 112 * [right - left, bottom - top] + [left, top]) * size - 0.5
    yy, xx = np.mgrid[0:size, 0:size]
    canvas = np.zeros((size, size), dtype=np.float64)
    for x0, y0 in landmarks:
        canvas += np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 6.0**2))
    image = torch.from_numpy(canvas.clip(0, 1) * 2 - 1).float().expand(1, 3, size, size)

    ours = arcface_crop(image)[0, ..., 0].astype(np.float64)
    bgr = np.ascontiguousarray(((image[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8))
    reference = norm_crop(bgr, landmarks.astype(np.float32), 112)[..., 0].astype(np.float64)
    assert np.abs(ours - reference).mean() < 1.0  # a 1 px shift of the box gives 1.3
    for x0, y0 in arcface_dst:  # dots land on the template in both
        assert ours[round(y0), round(x0)] > 200 and reference[round(y0), round(x0)] > 200
