"""IDSIM: cosine similarity of insightface ArcFace embeddings of the identity image and the output.

Embeddings come from a recognition ONNX model (``w600k_r50.onnx`` for real faces, the toy eval
ArcFace in the toy world) loaded by ``insightface.model_zoo.get_model`` and run by onnxruntime.

Crops. Faces are already aligned (CelebA-HQ / FFHQ alignment, toy faces centred), so no detector
runs: a fixed box, given as fractions ``(top, bottom, left, right)`` of the image, is cut out and
resized to the model's 112x112. ``CELEBAHQ_CROP`` is derived, by ``aligned_face_crop``, from the
ArcFace 5-point template (insightface's ``arcface_dst``) and the FFHQ/CelebA-HQ alignment rule,
which places a face by its eyes and mouth: the template's own landmarks, aligned by that rule,
fix where the template's 112x112 square lies in the aligned image. Result: (0.1165, 0.8812,
0.1147, 0.8794), i.e. rows 30:226 and columns 29:225 of a 256 image (196 px). (pSp's ID loss uses
rows 35:223, columns 32:220 at 256, a slightly tighter, empirical box.) The template's 0.3 degree
eye tilt is ignored: the box is axis-aligned.
"""

from __future__ import annotations

import numpy as np
import onnxruntime
import torch
from insightface.model_zoo import get_model
from insightface.model_zoo.arcface_onnx import ArcFaceONNX
from insightface.utils.face_align import arcface_dst

from models.weights import resolve_path
from ops.resize import resize_to
from ops.shapes import assert_shape

ARCFACE_SIZE = 112


def aligned_face_crop(template: np.ndarray = arcface_dst, template_size: int = ARCFACE_SIZE):
    """(top, bottom, left, right) fractions of an FFHQ/CelebA-HQ-aligned image covering the template square.

    template: (5, 2) pixel-centre (x, y) landmarks in a ``template_size`` square: eyes, nose, mouth
    corners. The alignment rule (FFHQ's, inherited from CelebA-HQ): with e the eye midpoint, m the
    mouth midpoint, the aligned image is the square centred at e + 0.1 (m - e), of half-side
    max(2 |eye_r - eye_l|, 1.8 |m - e|), its x axis along (eye_r - eye_l) + ((m - e)_y, -(m - e)_x).
    """
    points = np.asarray(template, dtype=np.float64) + 0.5  # pixel centres -> continuous coordinates
    eye_left, eye_right = points[0], points[1]
    eye_mid, mouth_mid = (eye_left + eye_right) / 2, (points[3] + points[4]) / 2
    eye_to_eye, eye_to_mouth = eye_right - eye_left, mouth_mid - eye_mid
    axis_x = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    axis_x /= np.hypot(*axis_x)
    axis_y = np.array([-axis_x[1], axis_x[0]])
    half_side = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    centre = eye_mid + 0.1 * eye_to_mouth
    # The template square's centre in aligned-image fractions; its side is template_size / (2 half_side).
    offset = np.full(2, template_size / 2) - centre
    centre_x = 0.5 + offset @ axis_x / (2 * half_side)
    centre_y = 0.5 + offset @ axis_y / (2 * half_side)
    half = template_size / (2 * half_side) / 2
    return (float(centre_y - half), float(centre_y + half), float(centre_x - half), float(centre_x + half))


CELEBAHQ_CROP = aligned_face_crop()
# The whole image: faces rendered centred and filling the frame (the toy world's).
FULL_CROP = (0.0, 1.0, 0.0, 1.0)


def arcface_crop(images: torch.Tensor, crop=CELEBAHQ_CROP, size: int = ARCFACE_SIZE) -> np.ndarray:
    """(B, 3, H, W) RGB in [-1, 1] -> uint8 (B, size, size, 3) BGR crops, as insightface expects.

    crop: (top, bottom, left, right) fractions of H and W, rounded to whole pixels; the box is
    resized to ``size`` with antialiased bilinear interpolation, then quantised.
    """
    top, bottom, left, right = crop
    if not (0 <= top < bottom <= 1 and 0 <= left < right <= 1):
        raise ValueError(f"crop must satisfy 0 <= top < bottom <= 1 and 0 <= left < right <= 1: {crop}")
    height, width = images.shape[-2:]
    box = images.detach().float()[
        :, :, round(top * height) : round(bottom * height), round(left * width) : round(right * width)
    ]
    box = resize_to(box, size, "bilinear")
    rgb = (box.clamp(-1, 1) * 127.5 + 127.5).round().to(torch.uint8)
    return np.ascontiguousarray(rgb.flip(1).permute(0, 2, 3, 1).cpu().numpy())


def default_providers() -> list[str]:
    """onnxruntime providers: CUDA (with CPU fallback) when this onnxruntime build has it, else CPU."""
    return select_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])


def select_providers(requested) -> list[str]:
    """The requested providers (e.g. from the config) that this onnxruntime build has, in order.

    A config can thus ask for CUDA first and still run where only the CPU provider exists.
    """
    available = set(onnxruntime.get_available_providers())
    selected = [p for p in requested if p in available]
    if not selected:
        raise ValueError(
            f"none of the providers {list(requested)} is available; this onnxruntime has {sorted(available)}"
        )
    return selected


class ArcFaceEmbedder:
    """An insightface ``ArcFaceONNX`` recognition model with a fixed crop.

    model_path: a recognition .onnx with a square >= 112 input (insightface feeds it RGB as
    (v - 127.5) / 127.5). providers: onnxruntime providers in order of preference, those missing
    from this onnxruntime build dropped; None or 'auto' -> ``default_providers()``.
    crop: see ``arcface_crop`` (``CELEBAHQ_CROP`` for aligned real faces, ``FULL_CROP`` for faces that fill the frame).
    """

    def __init__(self, model_path, providers=None, crop=CELEBAHQ_CROP):
        auto = providers is None or providers == "auto"
        providers = default_providers() if auto else select_providers(providers)
        self.model = get_model(str(model_path), providers=providers)
        if not isinstance(self.model, ArcFaceONNX):
            raise ValueError(f"{model_path} is not recognised by insightface as an ArcFace recognition model")
        self.model_path = str(model_path)
        self.crop = tuple(crop)
        self.size = self.model.input_size[0]

    @classmethod
    def from_registry(
        cls, name_or_path: str = "arcface_onnx", providers=None, crop=CELEBAHQ_CROP, weights_root=None
    ) -> ArcFaceEmbedder:
        """Embedder for a registry entry ('arcface_onnx', 'toy_eval_arcface_onnx') or an .onnx path.

        weights_root: folder of non-repo entries (default $IDEFACE_WEIGHTS). Raises the registry's
        MissingWeightsError (naming the file) when it is absent.
        """
        return cls(resolve_path(name_or_path, root=weights_root), providers=providers, crop=crop)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """(B, 3, H, W) RGB in [-1, 1] -> (B, D) float32 unit-norm embeddings."""
        crops = arcface_crop(images, self.crop, self.size)
        embeddings = np.asarray(self.model.get_feat(list(crops)), dtype=np.float32)
        return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)


def idsim(identity_imgs: torch.Tensor, outputs: torch.Tensor, embedder: ArcFaceEmbedder) -> torch.Tensor:
    """Per-pair cosine similarity (B,) float32 in [-1, 1], on ``outputs``' device.

    identity_imgs, outputs: (B, 3, H, W) RGB in [-1, 1] (any H, W; both cropped by the embedder).
    """
    assert_shape(identity_imgs, (None, 3, None, None), "identity images")
    assert_shape(outputs, (len(identity_imgs), 3, None, None), "outputs")
    cosine = (embedder(identity_imgs) * embedder(outputs)).sum(axis=1)
    return torch.from_numpy(cosine).to(outputs.device)
