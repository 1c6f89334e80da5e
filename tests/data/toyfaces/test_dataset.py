"""The toy world's people and Dataset: disjoint splits with fixed identity codes, the shared
pairing/manifest protocol, the gallery of photos and the contour modalities."""

import dataclasses

import torch

from data.conditions import lr_contour
from data.pairs import read_manifest
from data.toyfaces.dataset import ToyFaces, ToySizes, split_identities
from data.toyfaces.render import IDENTITY_DIMS, LOOK_DIMS, N_IDENTITY

SMALL = ToySizes(train_identities=6, photos_per_identity=3, test_identities=4, test_photos_per_identity=3)
SIZES = dict(lr_size=8, input_size=32)  # ToyFaces has no default sizes; these tests pick their own


def test_splits_have_disjoint_identities_and_fixed_identity_codes():
    train, test = split_identities("train", SMALL), split_identities("test", SMALL)
    assert len(train) == 18 and len(test) == 12
    assert not set(train.identity.tolist()) & set(test.identity.tolist())
    for split in (train, test):
        per = split.photos_per_identity
        ident = split.codes[:, list(IDENTITY_DIMS)].reshape(-1, per, N_IDENTITY)
        assert torch.equal(ident, ident[:, :1].expand_as(ident))  # one identity code per person
        look = split.codes[:, list(LOOK_DIMS)].reshape(-1, per, len(LOOK_DIMS))
        assert (look[:, 0] != look[:, 1]).all()  # the coarse look is drawn per photo
    codes_train = train.codes[::3, list(IDENTITY_DIMS)]
    codes_test = test.codes[::3, list(IDENTITY_DIMS)]
    assert torch.cdist(codes_train, codes_test).min() > 0.5
    again = split_identities("train", SMALL)
    assert torch.equal(again.codes, train.codes)


def test_photo_batches_cover_the_split_as_the_pairs_show_it(tmp_path):
    ds = ToyFaces("test", "lr", **SIZES, n_per_contour=10, cache_dir=tmp_path, sizes=SMALL)
    keys, persons, images = zip(*ds.photo_batches(batch_size=5))
    keys = [k for part in keys for k in part]
    assert keys == ds.keys and torch.equal(torch.cat(persons), ds.photos.identity)
    images = torch.cat(images)
    row = ds.manifest.rows[7]
    assert torch.equal(images[keys.index(row.identity)], ds[7]["identity"])
    assert torch.equal(images[keys.index(row.contour)], ds[7]["target"])


def test_dataset_items_and_modalities():
    size = SIZES["input_size"]
    for cond, channels in (("lr", 3), ("sketch", 1), ("mask", 19)):
        ds = ToyFaces("train", cond, **SIZES, sizes=SMALL)
        item = ds[4]
        assert item["contour"].shape == (channels, size, size)
        assert item["target"].shape == item["identity"].shape == (3, size, size)
        assert item["same_identity"] and item["identity_id"] == item["contour_identity_id"] == 1
        assert not torch.equal(item["identity"], item["target"])  # another photo of the person
        if cond == "lr":
            assert torch.allclose(item["contour"], lr_contour(item["target"], SIZES["lr_size"], size))
        if cond == "mask":
            assert torch.equal(item["contour"].sum(0), torch.ones(size, size))


def test_test_manifest_protocol(tmp_path):
    ds = ToyFaces("test", "lr", **SIZES, n_per_contour=10, cache_dir=tmp_path, sizes=SMALL)
    rows = ds.manifest.rows
    assert len(ds) == len(rows) == 12 * 10 and ds.manifest.n_contours == 12
    assert all(r.same_identity and r.identity_id == r.contour_identity_id for r in rows)
    assert all(r.identity != r.contour for r in rows)
    files = list(tmp_path.glob("*.csv"))
    assert len(files) == 1 and tuple(read_manifest(files[0])) == rows
    again = ToyFaces("test", "lr", **SIZES, n_per_contour=10, cache_dir=tmp_path, sizes=SMALL)
    assert again.manifest.hash == ds.manifest.hash
    item = ds[13]
    row = rows[13]
    assert item["identity_id"] == row.identity_id and item["index"] == 13
    photo = ds.photos.render([ds.keys.index(row.contour)], SIZES["input_size"]).image[0]
    assert torch.equal(item["target"], photo)
    batch = ds.__getitems__([5, 13, 40])  # the DataLoader's batched path gives the same items
    assert all(torch.equal(batch[1][k], item[k]) if torch.is_tensor(item[k]) else batch[1][k] == item[k] for k in item)


def test_test_contours_are_photo_major_and_identity_images_distinct():
    """Every identity's first photo comes before any second photo, so a leading subset of the
    manifest spans identities; with 11 photos per identity a contour's 10 identity images are the
    person's 10 other photos, each once."""
    ds = ToyFaces(
        "test", "lr", **SIZES, n_per_contour=10, sizes=dataclasses.replace(SMALL, test_photos_per_identity=11)
    )
    contours = list(dict.fromkeys(r.contour for r in ds.manifest.rows))
    assert [r.contour_identity_id for r in ds.manifest.rows[::10]][:4] == sorted(set(ds.photos.identity.tolist()))
    assert [c[-2:] for c in contours] == [f"{k:02d}" for k in range(11) for _ in range(4)]
    for contour in contours:
        images = [r.identity for r in ds.manifest.rows if r.contour == contour]
        assert len(set(images)) == 10 and contour not in images
