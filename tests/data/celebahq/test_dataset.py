"""The CelebA-HQ Dataset (data.celebahq.dataset): pairings, test manifests, contours, prepared files, batches
and unusable files, on a miniature CelebAMask-HQ tree."""

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from data.celebahq.dataset import CelebAHQ
from data.celebahq.files import (
    CelebAHQIndex,
    MissingDataError,
    PreparedCache,
    build_label_map,
    build_sketch,
    load_photo,
)
from data.conditions import CELEBAMASK_CLASSES, lr_contour
from data.images import BadImageError, save_image, save_label_map
from data.pairs import manifest_hash

S = 32  # encoder input size in these tests (the photos are 64, the masks 32)


def _colour(img: torch.Tensor) -> torch.Tensor:
    """Mean colour of the top-left corner (background = the identity's colour) in [0, 255]."""
    return (img[:, :3, :3].mean((1, 2)) + 1) * 127.5


def _is_colour(img, rgb, tol=20.0) -> bool:
    return bool(((_colour(img) - torch.tensor(rgb, dtype=torch.float32)).abs() < tol).all())


def _check_item(item, channels):
    assert set(item) == {"contour", "target", "identity", "identity_id", "same_identity", "index"}
    assert item["contour"].shape == (channels, S, S) and item["contour"].dtype == torch.float32
    for k in ("target", "identity"):
        assert item[k].shape == (3, S, S) and item[k].min() >= -1 and item[k].max() <= 1
    assert isinstance(item["identity_id"], int) and isinstance(item["same_identity"], bool)


def test_train_same_identity_draws_another_photo_of_the_person(mini_celebahq, tmp_path):
    ds = CelebAHQ(mini_celebahq.root, "train", "lr", input_size=S, lr_size=8, cache_dir=tmp_path)
    assert len(ds) == 20 and ds.manifest_path is None
    for i in range(len(ds)):
        item = ds[i]
        _check_item(item, 3)
        person = ds.records[i].identity
        assert item["identity_id"] == person and item["same_identity"] and item["index"] == i
        assert _is_colour(item["target"], mini_celebahq.colour(person))
        photo = load_photo(ds.index, ds.records[i].idx)
        assert torch.equal(item["contour"], lr_contour(photo, 8, S))
        assert _is_colour(item["identity"], mini_celebahq.colour(person))
        if person == 4242:  # the only photo of this person: the mirrored copy
            assert torch.equal(item["identity"], item["target"].flip(-1))
        else:
            assert not torch.equal(item["identity"], item["target"])
    assert ds.pairing_stats()["fallback_items"] == 1 and ds.pairing_stats()["fallback_draws"] == 1
    # contour and target of an item are fixed; the identity image is a function of (seed, epoch, i)
    person = ds.records[0].identity
    a, b = ds[0], ds[0]
    assert torch.equal(a["contour"], b["contour"]) and torch.equal(a["target"], b["target"])
    assert torch.equal(a["identity"], b["identity"])
    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        item = ds[0]
        assert _is_colour(item["identity"], mini_celebahq.colour(person))
        seen.add(item["identity"].sum().item())
    assert len(seen) > 2  # a fresh photo of the person across epochs


def test_train_random_and_self_pairings(mini_celebahq, tmp_path):
    rnd = CelebAHQ(mini_celebahq.root, "train", "lr", input_size=S, lr_size=8, pairing="random", cache_dir=tmp_path)
    for i in range(0, 20, 3):
        item = rnd[i]
        assert not item["same_identity"] and item["identity_id"] != rnd.records[i].identity
        assert _is_colour(item["identity"], mini_celebahq.colour(item["identity_id"]))
    own = CelebAHQ(mini_celebahq.root, "train", "lr", input_size=S, lr_size=8, pairing="self", cache_dir=tmp_path)
    item = own[2]
    assert item["same_identity"] and item["identity_id"] == own.records[2].identity
    assert not torch.equal(item["identity"], item["target"]) and not torch.equal(
        item["identity"], item["target"].flip(-1)
    )
    assert _is_colour(item["identity"], mini_celebahq.colour(item["identity_id"]), tol=35)


def test_test_split_is_the_fixed_manifest(mini_celebahq, tmp_path):
    ds = CelebAHQ(mini_celebahq.root, "test", "lr", input_size=S, lr_size=8, cache_dir=tmp_path)
    stats = ds.pairing_stats()
    # 16 test photos; 6006 has a single photo and is excluded; 15 contours x 10
    assert len(ds) == stats["pairs"] == 150
    assert stats["contours"] == 15 and stats["excluded_contours"] == 1
    path = PreparedCache(tmp_path).manifest("test", "same_identity", 10, 0)
    assert ds.manifest_path == path and stats["manifest_hash"] == manifest_hash(path)
    assert set(Counter(r.contour for r in ds.manifest.rows).values()) == {10}
    mtime = path.stat().st_mtime_ns
    again = CelebAHQ(mini_celebahq.root, "test", "mask", input_size=S, cache_dir=tmp_path)
    assert again.manifest.rows == ds.manifest.rows and path.stat().st_mtime_ns == mtime  # written once
    for i in (0, 57, 149):
        item, row = ds[i], ds.manifest.rows[i]
        _check_item(item, 3)
        assert item["index"] == i and item["identity_id"] == row.identity_id and item["same_identity"]
        assert _is_colour(item["identity"], mini_celebahq.colour(row.identity_id))
        assert _is_colour(item["target"], mini_celebahq.colour(row.contour_identity_id))
        again_item = ds[i]
        assert torch.equal(item["contour"], again_item["contour"])
        assert torch.equal(item["identity"], again_item["identity"])
    other_seed = CelebAHQ(mini_celebahq.root, "test", "lr", input_size=S, seed=1, cache_dir=tmp_path)
    assert other_seed.manifest.rows != ds.manifest.rows
    val = CelebAHQ(mini_celebahq.root, "val", "lr", input_size=S, lr_size=8, cache_dir=tmp_path)
    assert len(val) == 30 and val.pairing_stats()["excluded_contours"] == 1


def test_test_split_random_and_self_manifests(mini_celebahq, tmp_path):
    rnd = CelebAHQ(mini_celebahq.root, "test", "lr", input_size=S, pairing="random", cache_dir=tmp_path)
    assert len(rnd) == 160 and not any(r.same_identity for r in rnd.manifest.rows)
    item = rnd[3]
    assert not item["same_identity"]
    assert _is_colour(item["identity"], mini_celebahq.colour(item["identity_id"]))
    own = CelebAHQ(mini_celebahq.root, "test", "lr", input_size=S, pairing="self", cache_dir=tmp_path)
    assert len(own) == 16 and torch.equal(own[4]["identity"], own[4]["target"])


def test_mask_and_sketch_contours(mini_celebahq, tmp_path):
    mask_ds = CelebAHQ(mini_celebahq.root, "train", "mask", input_size=S, cache_dir=tmp_path)
    rec = mask_ds.records[0]
    item = mask_ds[0]
    _check_item(item, 19)
    labels = item["contour"].argmax(0)
    assert torch.equal(item["contour"].sum(0), torch.ones(S, S))
    assert torch.equal(labels, build_label_map(mask_ds.index, rec.idx, S))
    present = {CELEBAMASK_CLASSES[c] for c in labels.unique().tolist()}
    assert present >= {"background", "skin", "nose", "hair"}
    if rec.idx % 3 == 0:
        assert "hat" in present  # the hat mask overlaps the hair and wins
    # masks are half the photo size (512 vs 1024 in the real set): other input sizes resample them
    small = CelebAHQ(mini_celebahq.root, "train", "mask", input_size=16, cache_dir=tmp_path)[0]["contour"]
    assert small.shape == (19, 16, 16) and torch.equal(small.argmax(0), labels[::2, ::2])
    sketch_ds = CelebAHQ(mini_celebahq.root, "train", "sketch", input_size=S, cache_dir=tmp_path)
    sk = sketch_ds[0]["contour"]
    _check_item(sketch_ds[0], 1)
    assert torch.equal(sk, build_sketch(load_photo(sketch_ds.index, rec.idx), S))
    assert (sk > 0.99).float().mean() > 0.5  # lines on white paper


def test_prepared_files_are_preferred_when_present(mini_celebahq, tmp_path):
    rec_idx = CelebAHQIndex(mini_celebahq.root).split("train")[0].idx
    cache = PreparedCache(tmp_path)
    save_label_map(torch.full((S, S), 5), cache.labels(S, rec_idx))
    save_image(-torch.ones(1, S, S), cache.sketch(S, rec_idx))
    mask_ds = CelebAHQ(mini_celebahq.root, "train", "mask", input_size=S, cache_dir=tmp_path)
    assert (mask_ds[0]["contour"].argmax(0) == 5).all()
    sketch_ds = CelebAHQ(mini_celebahq.root, "train", "sketch", input_size=S, cache_dir=tmp_path)
    assert (sketch_ds[0]["contour"] == -1).all()
    ext = tmp_path / "external_sketches"
    save_image(torch.ones(1, 64, 64), ext / f"{rec_idx}.png")
    external = CelebAHQ(mini_celebahq.root, "train", "sketch", input_size=S, cache_dir=tmp_path, sketch_dir=ext)
    assert (external[0]["contour"] == 1).all()
    with pytest.raises(MissingDataError, match="no sketch"):
        external[1]


def test_dataloader_batches(mini_celebahq, tmp_path):
    ds = CelebAHQ(mini_celebahq.root, "test", "mask", input_size=S, cache_dir=tmp_path)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["contour"].shape == (4, 19, S, S) and batch["identity"].shape == (4, 3, S, S)
    assert batch["identity_id"].dtype == torch.int64 and batch["same_identity"].all()


def _position(ds, idx):
    return next(i for i, r in enumerate(ds.records) if r.idx == idx)


@pytest.mark.parametrize(
    "case,error,needle",
    [
        ("truncated", BadImageError, "truncated"),
        ("empty", BadImageError, "empty file"),
        ("missing_image", MissingDataError, "CelebAMask-HQ"),
        ("not_square", BadImageError, "64x48"),
    ],
)
def test_unusable_images_raise_with_the_file_name(damaged_celebahq, tmp_path, case, error, needle):
    ds = CelebAHQ(
        damaged_celebahq.tree.root, "train", "lr", input_size=S, lr_size=8, pairing="self", cache_dir=tmp_path
    )
    idx = damaged_celebahq.bad[case]
    with pytest.raises(error, match=needle) as info:
        ds[_position(ds, idx)]
    assert f"{idx}.jpg" in str(info.value)


def test_missing_annotation_raises_for_the_mask_condition(damaged_celebahq, tmp_path):
    ds = CelebAHQ(damaged_celebahq.tree.root, "train", "mask", input_size=S, pairing="self", cache_dir=tmp_path)
    idx = damaged_celebahq.bad["missing_masks"]
    with pytest.raises(MissingDataError, match=rf"{idx:05d}_skin.png.*CelebAMask-HQ"):
        ds[_position(ds, idx)]


@pytest.mark.parametrize("case", ["grayscale", "rgba", "cmyk", "16bit", "exif", "small"])
def test_odd_formats_load_like_the_original(mini_celebahq, damaged_celebahq, tmp_path, case):
    idx = damaged_celebahq.converted[case]
    clean = CelebAHQ(mini_celebahq.root, "train", "lr", input_size=S, pairing="self", cache_dir=tmp_path / "a")
    odd = CelebAHQ(damaged_celebahq.tree.root, "train", "lr", input_size=S, pairing="self", cache_dir=tmp_path / "b")
    got = odd[_position(odd, idx)]["target"]
    want = clean[_position(clean, idx)]["target"]
    if case in ("grayscale", "16bit"):
        assert torch.equal(got[0], got[1]) and torch.equal(got[1], got[2])
        luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        want = (want * luma).sum(0, keepdim=True).expand(3, -1, -1)
    assert (got - want).abs().mean() < 0.05, case
