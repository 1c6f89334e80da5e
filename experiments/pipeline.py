"""Inference: a trained encoder + its frozen generator turned into ``pipe(contour, identity)``.

::

    from experiments.pipeline import load_pipeline
    pipe = load_pipeline("runs/input_latent-toy-lr-s0")          # a run folder, its final/, or "toy" (shipped)
    out = pipe("contour.png", "identity.jpg")                    # paths, PIL images or tensors
    out.image       # (B, 3, S, S) in [-1, 1], S = generator size: the last refinement step
    out.steps       # every step's image;  out.codes: every step's W+ code (B, n_latent, style_dim)

A checkpoint is what training exports (``experiments/methods.py``): ``final/encoder.safetensors``
(``encoder.*`` tensors and the inverter's ``latent_avg``) and ``final/config.yaml``. The config
names the generator weights (registry name or path), the contour modality and the sizes; the
encoder is rebuilt from it with random initialisation (the trained weights replace it, so no
ArcFace/IR-SE file is needed) and loaded strictly.

Inputs (see :meth:`IDEPipeline.prepare_contour` and :meth:`IDEPipeline.prepare_identity`):

- identity: a face photo. Files and PIL images are aligned like the training data
  (``data.align``: dlib's 68 landmarks when installed, else insightface, else the cascade) unless
  ``aligned=True``; tensors are taken as aligned faces (B, 3, H, W) in [-1, 1] and only resized.
  ``result.aligners`` records which aligner prepared each identity.
- contour, by the checkpoint's modality (files in the ecosystem's formats, ``data.contour_files``;
  square, any size): ``lr`` any face image (an LR image such as 32x32 or 16x16, or an aligned
  photo), brought to the model's LR size with the bicubic downsampler and upsampled to the encoder
  input; ``sketch`` a line drawing (PNG or JPEG), read as 1 channel (white paper, black lines);
  ``mask`` a single-channel class-index PNG (values 0-18 in CelebAMask-HQ order, e.g. pSp's
  512x512 ``input_mask.png``), or a mask colour-coded with the CelebAMask-HQ palette, or an int
  tensor (B, H, W); one-hot encoded. Tensors are taken the same way, batched (B, ...) or single.

Only inference dependencies are imported (torch, safetensors, omegaconf, Pillow); nothing from
accelerate or wandb.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from data.align import DEFAULT_MIN_FACE, AlignResult, align_face
from data.conditions import contour_to_rgb
from experiments.exports import CheckpointError, find_final, load_run_config, read_encoder_state, recorded_generator
from models.build import EVAL_ONLY


@dataclass
class GenerationResult:
    """What one ``pipe(...)`` call produced.

    image: (B, 3, S, S) in [-1, 1] at generator resolution (the last step, clamped).
    steps: one (B, 3, S, S) image per refinement step (clamped to [-1, 1]; the last is ``image``).
    codes: one W+ code (B, n_latent, style_dim) per step. input_latents: one (B, C4, 4, 4) per step,
    or Nones for models without the input latent. contour: the encoder's contour input (B, C, s, s).
    identity: the encoder's identity input (B, 3, s, s) in [-1, 1]. aligners: per sample, the
    ``data.align`` aligner that prepared the identity (``aligned`` for tensors and ``aligned=True``);
    None from :meth:`IDEPipeline.run_tensors`, whose inputs come prepared.
    """

    image: torch.Tensor
    steps: list[torch.Tensor]
    codes: list[torch.Tensor]
    input_latents: list[torch.Tensor | None]
    contour: torch.Tensor
    identity: torch.Tensor
    aligners: list[str] | None = None


def _split_batch(x, item_dims: int) -> list:
    """A list/tuple as is, a tensor with ``item_dims + 1`` dims as its items, anything else as [x]."""
    if isinstance(x, (list, tuple)):
        return list(x)
    if isinstance(x, torch.Tensor) and x.dim() == item_dims + 1:
        return list(x)
    return [x]


def _is_file_like(x) -> bool:
    return isinstance(x, (str, os.PathLike))


class IDEPipeline:
    """A loaded encoder method (``models.inversion.IterativeInverter``) with input preparation.

    Attributes: ``modality`` (lr | sketch | mask), ``contour_channels``, ``input_size`` (encoder
    input side), ``lr_size``, ``output_size`` (generator side), ``n_iters`` (default steps),
    ``device``, ``dtype``, ``cfg`` (the run's config), ``model``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        cfg,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        detector: str = "auto",
    ):
        from data.conditions import condition_channels

        self.cfg = cfg
        self.modality = cfg.data.condition
        self.contour_channels = condition_channels(self.modality)
        self.input_size = int(cfg.data.input_size)
        self.lr_size = int(cfg.data.lr_size)
        self.weights_root = cfg.weights_root
        self.detector = detector
        self.device, self.dtype = torch.device(device), dtype
        # Weights stay float32; a lower ``dtype`` runs under autocast, which also covers the
        # inverter's float32 buffers (average image, latent_avg) that a plain cast would mismatch.
        self.model = model.to(device=self.device).eval()
        self.output_size = int(self.model.decoder.size)
        self.n_iters = 1 if self.model.kind == "psp" else int(self.model.n_iters)

    def __repr__(self) -> str:
        return (
            f"IDEPipeline(kind={self.model.kind}, modality={self.modality}, input={self.input_size}, "
            f"output={self.output_size}, n_iters={self.n_iters}, device={self.device}, "
            f"dtype={self.dtype})"
        )

    # ---- inputs -------------------------------------------------------------------------------
    def align(self, photo, aligned: bool = False) -> AlignResult:
        """Align one photo (path, PIL image or uint8 array) at the encoder input size (``data.align``)."""
        return align_face(
            photo,
            size=self.input_size,
            detector=self.detector,
            weights_root=self.weights_root,
            aligned=aligned,
            min_face=DEFAULT_MIN_FACE,
        )

    def prepare_identity(self, identity, aligned: bool = False) -> torch.Tensor:
        """Identity photos -> (B, 3, s, s) in [-1, 1] at the encoder input size.

        ``identity``: a path / PIL image / (3, H, W) tensor, a list of them, or a (B, 3, H, W) tensor.
        Files and PIL images are aligned unless ``aligned``; tensors are resized only.
        """
        return self._prepare_identity(identity, aligned)[0]

    def _prepare_identity(self, identity, aligned: bool) -> tuple[torch.Tensor, list[str]]:
        """:meth:`prepare_identity` plus the aligner of each item."""
        from ops.resize import resize_to

        out, methods = [], []
        for item in _split_batch(identity, 3):
            if isinstance(item, torch.Tensor):
                if item.dim() != 3 or item.shape[0] != 3:
                    raise ValueError(
                        f"identity tensors must be (3, H, W) or (B, 3, H, W) in [-1, 1], got {tuple(item.shape)}"
                    )
                out.append(resize_to(item[None].float(), self.input_size)[0].clamp(-1, 1))
                methods.append("aligned")
            else:
                result = self.align(item, aligned=aligned)
                if result.n_faces > 1:
                    warnings.warn(result.message, stacklevel=3)
                out.append(result.image)
                methods.append(result.method)
        return torch.stack(out), methods

    def prepare_contour(self, contour, modality: str | None = None) -> torch.Tensor:
        """Contours -> the encoder's contour input (B, C, s, s) for ``modality`` (default: the model's).

        ``contour``: a path / PIL image / tensor, a list of them, or a batched tensor. Per modality:
        ``lr`` image (3, H, W) in [-1, 1] or an image file -> LR contour (3, s, s); ``sketch`` file or
        (1, H, W) in [-1, 1] -> (1, s, s); ``mask`` label-index PNG, (H, W) int labels or a (19, H, W)
        one-hot -> (19, s, s). Raises ValueError when the modality differs from the checkpoint's.
        """
        modality = modality or self.modality
        if modality != self.modality:
            raise ValueError(
                f"this checkpoint was trained on {self.modality!r} contours "
                f"({self.contour_channels} channels); got modality={modality!r}"
            )
        labels = isinstance(contour, torch.Tensor) and not contour.dtype.is_floating_point
        items = _split_batch(contour, 2 if labels else 3)
        return torch.stack([self._one_contour(item) for item in items])

    def _one_contour(self, item) -> torch.Tensor:
        """One contour (file, PIL image or tensor) -> (C, s, s) for ``self.modality``."""
        import torch.nn.functional as F

        from data.conditions import lr_contour, one_hot
        from data.contour_files import read_label_file, read_lr_file, read_sketch_file
        from ops.resize import resize_to

        s, n_classes = self.input_size, self.contour_channels
        if self.modality == "mask":
            if _is_file_like(item):
                labels = read_label_file(item, n_classes=n_classes)
            elif isinstance(item, torch.Tensor) and item.dim() == 3 and item.shape[0] == n_classes:
                labels = item.argmax(0)
            elif isinstance(item, torch.Tensor) and item.dim() == 2 and not item.dtype.is_floating_point:
                labels = item.long()
            else:
                raise ValueError(
                    "mask contours must be label-map files (class indices 0-18 or colour-coded), "
                    f"(H, W) int tensors or ({n_classes}, H, W) one-hot tensors"
                )
            # Nearest keeps labels categorical.
            labels = F.interpolate(labels[None, None].float(), size=(s, s), mode="nearest")[0, 0].long()
            return one_hot(labels, n_classes)
        channels = 1 if self.modality == "sketch" else 3
        if _is_file_like(item):
            img = read_sketch_file(item) if channels == 1 else read_lr_file(item)
        elif isinstance(item, torch.Tensor):
            img = item.float()
        else:  # a PIL image, alpha composited on white like files
            from PIL import Image

            from data.align import load_rgb

            rgb = Image.fromarray(load_rgb(item)).convert("L" if channels == 1 else "RGB")
            img = torch.from_numpy(np.array(rgb)).reshape(rgb.height, rgb.width, channels).permute(2, 0, 1)
            img = img.float() / 127.5 - 1
        if img.dim() != 3 or img.shape[0] != channels:
            raise ValueError(f"{self.modality} contours must be ({channels}, H, W) in [-1, 1], got {tuple(img.shape)}")
        if self.modality == "sketch":
            return resize_to(img[None], s)[0].clamp(-1, 1)
        return lr_contour(img[None], self.lr_size, s)[0]

    # ---- generation ---------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        contour,
        identity,
        modality: str | None = None,
        n_iters: int | None = None,
        seed: int | None = None,
        aligned: bool = False,
    ) -> GenerationResult:
        """Generate faces for (contour, identity) pairs; see the module docstring for the inputs.

        One identity (or contour) is broadcast over a batch of the other. ``n_iters``: refinement
        steps (default: the trained number; psp is single-pass). ``seed``: None uses the generator's
        fixed noise maps (ReStyle's inference: deterministic); an int draws fresh noise maps from a
        generator seeded with it (reproducible, different per seed).
        """
        c = self.prepare_contour(contour, modality)
        i, aligners = self._prepare_identity(identity, aligned)
        if c.shape[0] != i.shape[0]:
            if min(c.shape[0], i.shape[0]) != 1:
                raise ValueError(
                    f"{c.shape[0]} contours and {i.shape[0]} identities: give equal numbers, "
                    "or one of either to pair with all of the other"
                )
            b = max(c.shape[0], i.shape[0])
            c, i, aligners = c.expand(b, -1, -1, -1), i.expand(b, -1, -1, -1), aligners * (b // len(aligners))
        result = self.run_tensors(c, i, n_iters=n_iters, seed=seed)
        result.aligners = aligners
        return result

    @torch.no_grad()
    def run_tensors(
        self, contour: torch.Tensor, identity: torch.Tensor, n_iters: int | None = None, seed: int | None = None
    ) -> GenerationResult:
        """Run the refinement on prepared inputs: contour (B, C, s, s), identity (B, 3, s, s) in [-1, 1]."""
        n = self.n_iters if n_iters is None else int(n_iters)
        if n < 1 or (self.model.kind == "psp" and n != 1):
            raise ValueError(f"n_iters must be >= 1 (exactly 1 for a psp checkpoint), got {n}")
        c = contour.to(self.device, torch.float32)
        i = identity.to(self.device, torch.float32)
        autocast = torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)
        devices = [self.device] if self.device.type == "cuda" else []
        with autocast, torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            steps = self.model(c, i, n_iters=n, randomize_noise=seed is not None)
        images = [s.image.float().clamp(-1, 1) for s in steps]
        return GenerationResult(
            image=images[-1],
            steps=images,
            codes=[s.w.float() for s in steps],
            input_latents=[None if s.input_latent is None else s.input_latent.float() for s in steps],
            contour=c,
            identity=i,
        )

    def grid(self, result: GenerationResult, tile: int | None = None) -> torch.Tensor:
        """One row per sample: contour | identity | step 1 .. step n-1 | result (step n).

        Returns (3, B * tile, (n + 2) * tile) in [-1, 1]; ``tile`` defaults to the encoder input size.
        """
        from ops.resize import resize_to

        tile = tile or self.input_size
        columns = [contour_to_rgb(result.contour), result.identity, *result.steps]
        columns = [resize_to(x.float().cpu(), tile).clamp(-1, 1) for x in columns]
        rows = torch.cat(columns, dim=3)  # (B, 3, tile, cols * tile)
        return torch.cat(list(rows), dim=1)


def load_pipeline(
    checkpoint,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    weights_root=None,
    detector: str = "auto",
) -> IDEPipeline:
    """Build an :class:`IDEPipeline` from a checkpoint.

    checkpoint: a run folder, its ``final/`` folder (``encoder.safetensors`` + ``config.yaml``), or the
    name of a shipped encoder (``models.weights.SHIPPED_ENCODERS``: ``"toy"``, checked against its sha256).
    weights_root: overrides the run's ``weights_root`` for the generator file (``$IDEFACE_WEIGHTS`` applies
    when both are unset).
    detector: face aligner for identity photos (``data.face_detection.DETECTORS``: auto | dlib | dlib-mmod |
    insightface | cascade; auto takes dlib, then insightface buffalo_l, then the cascade, whichever is there first).
    dtype: compute precision; bfloat16/float16 run under autocast (weights stay float32).
    Raises :class:`CheckpointError`, or the registry's MissingWeightsError for a missing generator or
    shipped encoder.
    """
    from experiments.methods import build_encoder_model
    from experiments.world import load_frozen_generator
    from models.weights import (
        SHIPPED_ENCODERS,
        mismatch_detail,
        resolve,
        resolve_path,
        state_fingerprint,
    )

    shipped = SHIPPED_ENCODERS.get(str(checkpoint))
    folder = resolve(shipped).parent if shipped else find_final(checkpoint)
    cfg = load_run_config(folder)
    if weights_root is not None:
        cfg.weights_root = str(weights_root)
    if cfg.model.kind in EVAL_ONLY:
        raise CheckpointError(f"{folder}: model.kind={cfg.model.kind} is trained by nothing; it has no encoder to load")
    # The trained weights replace every initialisation, so skip loading the IR-SE init files.
    cfg.model.encoder_init = "random"
    cfg.model.identity_init = "random"
    generator, latent_avg = load_frozen_generator(cfg, torch.device("cpu"))
    weights = folder / "encoder.safetensors"
    trained_with = recorded_generator(weights)
    # An encoder predicts codes for the generator it was trained through; with any other its outputs are
    # meaningless. Files exported before the fingerprint existed carry none and are not checked.
    if trained_with is not None and trained_with != (found := state_fingerprint(generator)):
        raise CheckpointError(
            f"{weights} was trained through generator weights with fingerprint {trained_with}, but "
            f"{resolve_path(cfg.generator.weights, cfg.weights_root)} has {found}: point weights_root or "
            "generator.weights at the generator it was trained with, or retrain the encoder for this one"
        )
    model = build_encoder_model(cfg, generator, latent_avg)  # inits random above: no file is read
    encoder_state, exported_latent_avg = read_encoder_state(weights)
    try:
        model.encoder.load_state_dict(encoder_state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{weights} does not match the encoder its config describes ({mismatch_detail(err)})"
        ) from None
    if exported_latent_avg is not None:
        model.set_latent_avg(exported_latent_avg)
    return IDEPipeline(model, cfg, device=device, dtype=dtype, detector=detector)
