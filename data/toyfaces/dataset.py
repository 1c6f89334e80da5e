"""The toy world's people and its Dataset: disjoint train/test identities, each person's photos as codes
for ``data.toyfaces.render``, and ``ToyFaces``, with the same items, pairing modes and test manifest as
the CelebA-HQ dataset (``data.pairs``, ``data.conditions``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch.utils.data import Dataset

from data.toyfaces.render import FACTOR_DIMS, N_IDENTITY, N_PHOTO, Render, assemble, render_gaussian


def identity_codes(n: int, seed: int, stream: int) -> torch.Tensor:
    """(n, N_IDENTITY) standard-normal identity codes; ``stream`` separates splits (train 0, test 1)."""
    g = torch.Generator().manual_seed(1_000_003 * seed + 7919 * stream + 11)
    return torch.randn(n, N_IDENTITY, generator=g)


def photo_codes(n_ids: int, photos: int, seed: int, stream: int) -> torch.Tensor:
    """(n_ids, photos, N_PHOTO) standard-normal per-photo codes (look and nuisance)."""
    g = torch.Generator().manual_seed(1_000_003 * seed + 7919 * stream + 12)
    return torch.randn(n_ids, photos, N_PHOTO, generator=g)


SPLITS = {"train": 0, "test": 1}


@dataclass(frozen=True)
class ToyIdentities:
    """The photos of one split: codes (n_ids * photos, FACTOR_DIMS) and their identity labels."""

    codes: torch.Tensor
    identity: torch.Tensor  # (N,) int64, ids are global: test ids start after the train ids
    photos_per_identity: int

    @classmethod
    def build(
        cls, split: str, n_identities: int, photos_per_identity: int, seed: int = 0, id_offset: int = 0
    ) -> ToyIdentities:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
        stream = SPLITS[split]
        ident = identity_codes(n_identities, seed, stream)
        photo = photo_codes(n_identities, photos_per_identity, seed, stream)
        codes = assemble(ident[:, None].expand(-1, photos_per_identity, -1), photo)
        ids = torch.arange(n_identities).repeat_interleave(photos_per_identity) + id_offset
        return cls(codes.reshape(-1, FACTOR_DIMS).contiguous(), ids, photos_per_identity)

    def __len__(self) -> int:
        return self.codes.shape[0]

    def render(self, index, size: int = 64, chunk: int = 256) -> Render:
        """Render photos by index (any iterable of ints) at ``size``, ``chunk`` at a time."""
        codes = self.codes[torch.as_tensor(list(index), dtype=torch.long)]
        parts = [render_gaussian(codes[i : i + chunk], size) for i in range(0, len(codes), chunk)]
        return Render(*(torch.cat([getattr(p, f) for p in parts]) for f in ("image", "labels", "sketch")))


@dataclass
class ToySizes:
    """How many people and photos the toy world's splits hold: the run config's ``data.options``."""

    train_identities: int = 2000
    photos_per_identity: int = 15
    test_identities: int = 300
    # each contour's 10 identity images can then be the person's other photos (test_pairing=same_identity)
    test_photos_per_identity: int = 11

    def __post_init__(self):
        for name, value in vars(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def split_identities(split: str, sizes: ToySizes | None = None, seed: int = 0) -> ToyIdentities:
    """The photos of the train or test split (disjoint identities: test ids follow the train ids)."""
    n = sizes or ToySizes()
    if split == "train":
        return ToyIdentities.build("train", n.train_identities, n.photos_per_identity, seed)
    return ToyIdentities.build(
        "test", n.test_identities, n.test_photos_per_identity, seed, id_offset=n.train_identities
    )


class ToyFaces(Dataset):
    """Toy-world dataset with the CelebA-HQ items: a dict per item (see ``__getitem__``).

    split: ``train`` (items = photos of the train identities; the identity image is drawn afresh by
    ``data.pairs.TrainPairSampler`` on each read) or ``test`` (items = rows of the fixed test
    manifest, ``n_per_contour`` identity images per contour). ``condition``: lr | sketch | mask,
    built by ``data.conditions.make_condition`` (lr = bicubic down to ``lr_size`` and back up to
    ``input_size``; sketch and mask come from the renderer's geometry); both sizes are the world's
    (``data.lr_size``, ``data.input_size`` in experiments/configs/world/toy.yaml), so they have no default
    here. Photos are rendered on the fly at ``input_size`` (about a millisecond each). The identities are
    fixed by ``world_seed`` (the shipped toy networks were trained on world 0); ``seed`` only seeds the test
    manifest draw.
    The manifest CSV is written to ``cache_dir`` when given, otherwise kept in memory.
    """

    # The dataset's own settings (experiments.world.dataset_options checks data.options against them),
    # and the data keys earlier versions stored them under (run folders' config.yaml files still may).
    Options = ToySizes
    RENAMED_KEYS = {f"toy_{f.name}": f.name for f in fields(ToySizes)}

    @classmethod
    def from_config(cls, data_cfg, options: ToySizes, **common) -> ToyFaces:
        """From the run config's ``data`` section, its checked ``options`` and the arguments every dataset
        takes (``common``: split, condition, lr_size, input_size, pairing, seed, n_per_contour, cache_dir)."""
        return cls(sizes=options, **common)

    @staticmethod
    def people(split: str, options: ToySizes) -> ToyIdentities:
        """The split's people, rendered on demand (``.identity`` (N,) int64, ``.render(index, size)``)."""
        return split_identities(split, options)

    def __init__(
        self,
        split: str = "train",
        condition: str = "lr",
        *,
        lr_size: int,
        input_size: int,
        pairing: str = "same_identity",
        seed: int = 0,
        n_per_contour: int = 10,
        sizes: ToySizes | None = None,
        cache_dir: str | Path | None = None,
        world_seed: int = 0,
    ):
        from data.conditions import make_condition
        from data.pairs import TrainPairSampler, load_or_build_manifest

        self.split, self.input_size = split, input_size
        self.seed, self.epoch = seed, 0
        sizes = sizes or ToySizes()
        self.photos = split_identities(split, sizes, world_seed)
        self.condition = make_condition(condition, out_size=input_size, lr_size=lr_size)
        per = self.photos.photos_per_identity
        self.keys = [f"toy/{split}/{int(i):05d}_{k % per:02d}" for k, i in enumerate(self.photos.identity)]
        self._position = {key: k for k, key in enumerate(self.keys)}
        items = list(zip(self.keys, self.photos.identity.tolist()))
        self.sampler = self.manifest = None
        if split == "train":
            self.sampler = TrainPairSampler(items, pairing)
        else:
            # Photo-major contour order (every identity's first photo, then every second photo, ...),
            # so a leading subset of the manifest (eval.max_pairs) spans many identities.
            items.sort(key=lambda item: (self._position[item[0]] % per, self._position[item[0]]))
            path = None
            if cache_dir:
                name = (
                    f"toy_w{world_seed}_{sizes.test_identities}x{sizes.test_photos_per_identity}_pm"
                    f"_after{sizes.train_identities}_{pairing}_n{n_per_contour}_s{seed}.csv"
                )
                path = Path(cache_dir).expanduser() / name
            self.manifest = load_or_build_manifest(path, items, n_per_contour, pairing, seed)

    def __len__(self) -> int:
        return len(self.sampler) if self.sampler is not None else len(self.manifest.rows)

    def set_epoch(self, epoch: int) -> None:
        """Training draws depend on (seed, epoch, index); the training loop sets the epoch."""
        self.epoch = epoch

    def photo_batches(self, batch_size: int = 256):
        """Every photo of the split, in order, as the pairs show them: yields (keys list[str], identity ids
        (B,) int64, images (B, 3, S, S) in [-1, 1]); the identity-following metric's gallery."""
        for start in range(0, len(self.keys), batch_size):
            index = range(start, min(start + batch_size, len(self.keys)))
            yield (
                [self.keys[i] for i in index],
                self.photos.identity[start : index.stop].clone(),
                self.photos.render(index, self.input_size).image,
            )

    def __getitem__(self, index: int) -> dict:
        """{"contour": (C, S, S) float, "target": (3, S, S) in [-1, 1], "identity": (3, S, S) in [-1, 1],
        "identity_id": int (the identity image's person), "contour_identity_id": int,
        "same_identity": bool, "index": int}."""
        return self.__getitems__([index])[0]

    def __getitems__(self, indices) -> list[dict]:
        """Items for a list of indices, rendered in one batch (torch's DataLoader calls this per batch)."""
        from data.pairs import apply_draw, item_generator

        pairs = []  # (contour photo, identity photo, identity id, contour id, same, draw or None)
        rngs = {}  # training draws depend on (seed, epoch, index) only: same pairs on any process count
        for index in indices:
            if self.sampler is not None:
                rngs[index] = item_generator(self.seed, self.epoch, index)
                draw = self.sampler.draw(index, rngs[index])
                contour_id = int(self.photos.identity[index])
                pairs.append(
                    (index, draw.index, int(self.photos.identity[draw.index]), contour_id, draw.same_identity, draw)
                )
            else:
                row = self.manifest.rows[index]
                pairs.append(
                    (
                        self._position[row.contour],
                        self._position[row.identity],
                        row.identity_id,
                        row.contour_identity_id,
                        row.same_identity,
                        None,
                    )
                )
        n = len(pairs)
        rendered = self.photos.render([p[0] for p in pairs] + [p[1] for p in pairs], self.input_size)
        contours = self.condition(rendered.image[:n], labels=rendered.labels[:n], sketch=rendered.sketch[:n])
        items = []
        for k, (index, (_, _, identity_id, contour_id, same, draw)) in enumerate(zip(indices, pairs)):
            identity = rendered.image[n + k]
            if draw is not None:
                identity = apply_draw(identity, draw, rngs[index])
            items.append(
                {
                    "contour": contours[k],
                    "target": rendered.image[k],
                    "identity": identity,
                    "identity_id": identity_id,
                    "contour_identity_id": contour_id,
                    "same_identity": bool(same),
                    "index": int(index),
                }
            )
        return items
