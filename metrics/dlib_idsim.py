"""A second, independent identity judge: dlib's ResNet face recogniser (128-d descriptors).

IDSIM's main column uses an ArcFace (insightface's w600k_r50; the toy world's evaluation ArcFace),
the same family as the ID loss's network (IR-SE50 / the toy loss ArcFace). A method could score by
fitting features that family shares, so, as pSp/ReStyle/HyperStyle judge identity with a network
other than their loss's (CurricularFace), the real world also reports dlib's verdict: per pair the
Euclidean distance of dlib's descriptors (``dlib_distance``, lower is closer) and whether it is under
dlib's same-person threshold of 0.6 (``dlib_same_person``, the rate of pairs judged the same person;
99.38% accurate on LFW per dlib). The descriptors come from a network of another architecture,
training set and loss (a ResNet with 27 conv layers trained from scratch on about 3 million faces,
by dlib-models' README). It is never used as a loss.

Crops. Faces are FFHQ/CelebA-HQ-aligned, so no detector runs: each image is resized to
:data:`JUDGE_SIZE` and dlib's 5-point landmarks are fitted inside the fixed box :data:`ALIGNED_BOX`
(where dlib's HOG detector puts the face in aligned crops: measured on the astronaut and the faces
of insightface's t1.jpg aligned at 256, spread 0.03); dlib then cuts its own 150 px chip
from those landmarks, as ``compute_face_descriptor`` always does.

Cosine similarity suits these descriptors badly: they share a large common component (on the astronaut
and six other people, different people score 0.82-0.90 and the same person 0.99), so the distance
and dlib's threshold are reported instead. Needs the align extra (``pip install -e ".[align]"``, see
``models.dlibface``).
"""

from __future__ import annotations

import numpy as np
import torch

from models import dlibface
from ops.resize import resize_to
from ops.shapes import assert_shape

JUDGE_SIZE = 256
ALIGNED_BOX = (0.18, 0.30, 0.785, 0.90)  # (x0, y0, x1, y1) fractions of an aligned face image
SAME_PERSON_DISTANCE = 0.6


class DlibEmbedder:
    """(B, 3, H, W) RGB in [-1, 1], FFHQ-aligned -> (B, 128) float64 dlib descriptors."""

    def __init__(self):
        dlibface.require()
        self.box = tuple(v * JUDGE_SIZE for v in ALIGNED_BOX)
        self.name = f"dlib-resnet({dlibface.MODEL_FILES['recogniser']})"

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        x = resize_to(images.detach().float().cpu(), JUDGE_SIZE, "bilinear")
        rgb = (x.clamp(-1, 1) * 127.5 + 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        out = []
        for img in rgb:
            _, shape = dlibface.landmarks(img, self.box, points=5)
            out.append(dlibface.descriptor(img, shape))
        return np.stack(out)


def dlib_distance(identity_imgs: torch.Tensor, outputs: torch.Tensor, embedder: DlibEmbedder) -> torch.Tensor:
    """Per-pair Euclidean distance of dlib descriptors (B,) float32 >= 0, on ``outputs``' device
    (same person by dlib's rule where < :data:`SAME_PERSON_DISTANCE`)."""
    assert_shape(identity_imgs, (None, 3, None, None), "identity images")
    assert_shape(outputs, (len(identity_imgs), 3, None, None), "outputs")
    distance = np.linalg.norm(embedder(identity_imgs) - embedder(outputs), axis=1)
    return torch.from_numpy(distance.astype(np.float32)).to(outputs.device)
