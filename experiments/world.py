"""A world = the data and the frozen pretrained networks a run uses, all named by config.

``world=toy`` (the embedded default) and ``world=celebahq`` differ only in config values: which
dataset class, which sizes, which registry entries. Nothing below branches on the world's name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch.utils.data import Dataset

from data.conditions import condition_channels


def _toy_faces():
    from data.toyfaces.dataset import ToyFaces

    return ToyFaces


def _celebahq():
    from data.celebahq.dataset import CelebAHQ

    return CelebAHQ


# data.dataset -> its dataset class (imported when a world is built: each module's dependencies are its
# own): the one list of dataset names. A class has ``from_config(data section, options, **common
# arguments)``, an ``Options`` dataclass (its own settings, given as ``data.options``) and
# ``RENAMED_KEYS`` (data keys of earlier versions -> Options fields); one that renders its photos rather
# than reading files also has ``people(split, options)`` (see :func:`rendered_people`).
DATASETS = {"toy": _toy_faces, "celebahq": _celebahq}


def dataset_class(data_cfg):
    """The class named by ``data.dataset``."""
    return DATASETS[data_cfg.dataset]()


def dataset_options(data_cfg):
    """``data.options`` checked against the dataset class's ``Options`` -> an ``Options`` instance (its
    defaults filled in). Raises ValueError, one line, on an unknown key, a bad type or a bad value."""
    cls = dataset_class(data_cfg)
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls.Options), data_cfg.options))
    except (OmegaConfBaseException, ValueError, TypeError) as err:
        allowed = ", ".join(f.name for f in fields(cls.Options)) or "none"
        raise ValueError(
            f"bad data.options for data.dataset={data_cfg.dataset}: {str(err).splitlines()[0]} (its options: {allowed})"
        ) from None


def rendered_people(cfg: DictConfig, split: str = "test"):
    """The split's people for a world that renders its photos (``.identity`` (N,) int64 person ids,
    ``.render(index, size)`` -> images (B, 3, S, S) in [-1, 1], labels, sketches), or None for a dataset
    of image files: what the demo's examples and the identity figure are drawn from."""
    cls = dataset_class(cfg.data)
    return cls.people(split, dataset_options(cfg.data)) if hasattr(cls, "people") else None


def build_dataset(cfg: DictConfig, split: str) -> Dataset:
    """The training or test dataset named by ``data.dataset`` (items as in data/pairs.py)."""
    d = cfg.data
    cache_dir = d.cache_dir or str(Path(cfg.output_dir).expanduser() / "cache")
    common = dict(
        split=split,
        condition=d.condition,
        lr_size=d.lr_size,
        input_size=d.input_size,
        pairing=d.pairing if split == "train" else d.test_pairing,
        seed=cfg.seed if split == "train" else d.manifest_seed,
        n_per_contour=d.n_identity_per_contour,
        cache_dir=cache_dir,
    )
    return dataset_class(d).from_config(d, dataset_options(d), **common)


def reference_images(cfg: DictConfig, n: int, batch_size: int):
    """Yield up to ``n`` real faces (B, 3, S, S) in [-1, 1], the train split's targets in order: the FID
    reference set (the paper uses all 30,000 CelebA-HQ images; ours excludes the test identities)."""
    # The train split's items are its photos in order, so its photo batches are the targets without the
    # contours and identity draws an item also builds (bitwise the same images, 4x faster in the toy world).
    left = n
    for _, _, images in build_dataset(cfg, "train").photo_batches(batch_size):
        if left <= 0:
            return
        yield images[:left]
        left -= len(images)


def load_frozen_generator(cfg: DictConfig, device: torch.device):
    """The pretrained generator (eval, no grad) and its average latent (style_dim,)."""
    from models.stylegan2 import load_generator
    from models.weights import WeightsMismatchError, mismatch_detail, resolve_path

    g = cfg.generator
    channels = {int(k): int(v) for k, v in g.channels.items()} if g.channels else None
    path = resolve_path(g.weights, cfg.weights_root)
    try:
        generator, latent_avg = load_generator(
            path,
            g.size,
            style_dim=g.style_dim,
            n_mlp=g.n_mlp,
            channel_multiplier=g.channel_multiplier,
            channels=channels,
        )
    except RuntimeError as err:  # load_state_dict: the file is another generator than the config describes
        raise WeightsMismatchError(
            f"{path} does not fit the generator of generator.size={g.size}, style_dim={g.style_dim}, "
            f"n_mlp={g.n_mlp}, channels={channels} ({mismatch_detail(err)}); set generator.* to the file's "
            "sizes, or point generator.weights at the file these sizes were made for"
        ) from None
    generator.eval().requires_grad_(False).set_factored_backward(g.factored_backward).to(device)
    return generator, latent_avg.to(device)


@dataclass
class World:
    cfg: DictConfig
    device: torch.device

    @cached_property
    def generator_and_avg(self):
        return load_frozen_generator(self.cfg, self.device)

    @property
    def generator(self):
        return self.generator_and_avg[0]

    @property
    def latent_avg(self) -> torch.Tensor:
        return self.generator_and_avg[1]

    @cached_property
    def train_set(self) -> Dataset:
        return build_dataset(self.cfg, "train")

    @cached_property
    def test_set(self) -> Dataset:
        return build_dataset(self.cfg, "test")

    @property
    def contour_channels(self) -> int:
        return condition_channels(self.cfg.data.condition)

    def validation_batch(self, n: int) -> dict:
        """The first ``n`` test pairs, stacked: a fixed held-out batch for image grids."""
        items = [self.test_set[i] for i in range(min(n, len(self.test_set)))]
        return {
            k: torch.stack([it[k] for it in items])
            if isinstance(items[0][k], torch.Tensor)
            else [it[k] for it in items]
            for k in items[0]
        }


def weights_root(cfg: DictConfig) -> Path | None:
    return Path(cfg.weights_root).expanduser() if cfg.weights_root else None
