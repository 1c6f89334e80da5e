"""Toy faces: determinism, shapes and ranges, label maps and sketches agree with the image, disjoint
splits, identity apart from the per-photo look, the shared pairing/manifest protocol and the contour
modalities."""

import dataclasses

import torch

from data.conditions import lr_contour
from data.pairs import read_manifest
from data.toyfaces import (
    FACTOR_DIMS,
    HAIR,
    IDENTITY_DIMS,
    LOOK_DIMS,
    N_IDENTITY,
    N_PHOTO,
    PHOTO_DIMS,
    RENDERED_CLASSES,
    SKIN,
    SKIN_TONES,
    ToyFaces,
    ToySizes,
    assemble,
    factors_from_gaussian,
    render_gaussian,
    split_identities,
    with_look,
)

SMALL = ToySizes(train_identities=6, photos_per_identity=3, test_identities=4, test_photos_per_identity=3)


def codes(n, seed=0):
    return torch.randn(n, FACTOR_DIMS, generator=torch.Generator().manual_seed(seed))


def test_render_is_deterministic_with_shapes_and_ranges():
    z = codes(6)
    a, b = render_gaussian(z, 48), render_gaussian(z.clone(), 48)
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("image", "labels", "sketch"))
    assert a.image.shape == (6, 3, 48, 48) and a.image.dtype == torch.float32
    assert a.labels.shape == (6, 48, 48) and a.labels.dtype == torch.int64
    assert a.sketch.shape == (6, 1, 48, 48)
    assert a.image.min() >= -1 and a.image.max() <= 1
    assert set(a.sketch.unique().tolist()) <= {-1.0, 1.0}
    assert set(a.labels.unique().tolist()) <= set(RENDERED_CLASSES)
    # every face shows skin, hair, both eyes, nose and lips
    for k in range(6):
        assert {1, 2, 4, 5, 11, 12, 13} <= set(a.labels[k].unique().tolist())
    assert not torch.equal(a.image[0], a.image[1])


def test_factors_are_a_function_of_the_gaussian_code():
    z = codes(8)
    f1, f2 = factors_from_gaussian(z), factors_from_gaussian(torch.cat([z, torch.randn(8, 5)], 1))
    assert all(torch.equal(f1[k], f2[k]) for k in f1)  # extra dims are ignored
    assert f1["skin_tone"].dtype == torch.int64 and 0 <= f1["skin_tone"].min() <= f1["skin_tone"].max() < 5
    z2 = z.clone()
    z2[:, list(PHOTO_DIMS)] += 1.0  # look and nuisance only
    f3 = factors_from_gaussian(z2)
    assert torch.equal(f1["eye_colour"], f3["eye_colour"]) and not torch.equal(f1["shift_x"], f3["shift_x"])
    assert not torch.equal(f1["face_width"], f3["face_width"])
    try:
        factors_from_gaussian(torch.zeros(2, FACTOR_DIMS - 1))
    except ValueError:
        pass
    else:
        raise AssertionError("a short code must raise")


def test_label_map_agrees_with_the_image():
    z = codes(4, seed=1)
    r = render_gaussian(z, 64)
    f = factors_from_gaussian(z)
    lab = r.labels
    # pixels whose 5x5 neighbourhood has one label (anti-aliased edges spill one pixel over)
    one_hot = torch.nn.functional.one_hot(lab, 19).permute(0, 3, 1, 2).float()
    inner = torch.nn.functional.avg_pool2d(one_hot, 5, 1, 2, count_include_pad=False).amax(1) > 0.999
    for k in range(4):
        bg = torch.stack([f["bg_r"][k], f["bg_g"][k], f["bg_b"][k]]) * 2 - 1
        pix = r.image[k][:, (lab[k] == 0) & inner[k]]
        assert pix.shape[1] > 50 and torch.allclose(pix, bg[:, None].expand_as(pix), atol=1e-5)
        # skin pixels carry the identity's skin tone up to the lighting gain (ambient x directional)
        skin = (r.image[k][:, (lab[k] == SKIN) & inner[k]] + 1) / 2
        tone = torch.tensor(SKIN_TONES[int(f["skin_tone"][k])])
        ratio = (skin / tone[:, None]).clamp(max=2)
        assert 0.5 < ratio.median() < 1.5 and ratio.std(0).median() < 0.1  # grey-scaled, same hue
        assert (lab[k] == HAIR).sum() > 30


def test_sketch_lines_follow_label_boundaries():
    r = render_gaussian(codes(3, seed=2), 64)
    boundary = torch.zeros_like(r.labels, dtype=torch.bool)
    boundary[:, :, :-1] |= r.labels[:, :, :-1] != r.labels[:, :, 1:]
    boundary[:, :-1] |= r.labels[:, :-1] != r.labels[:, 1:]
    dark = r.sketch[:, 0] < 0
    assert boundary.any() and dark[boundary].all()
    assert dark.float().mean() < 0.25  # lines, not fills


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


def test_assemble_and_with_look_place_each_part_in_its_dims():
    ident, photo = torch.randn(5, N_IDENTITY), torch.randn(5, N_PHOTO)
    codes = assemble(ident, photo)
    assert codes.shape == (5, FACTOR_DIMS)
    assert torch.equal(codes[:, list(IDENTITY_DIMS)], ident) and torch.equal(codes[:, list(PHOTO_DIMS)], photo)
    other = torch.randn(5, FACTOR_DIMS)
    alike = with_look(codes, other)
    assert torch.equal(alike[:, list(LOOK_DIMS)], other[:, list(LOOK_DIMS)])
    kept = [d for d in range(FACTOR_DIMS) if d not in LOOK_DIMS]
    assert torch.equal(alike[:, kept], codes[:, kept])
    f_alike, f_other = factors_from_gaussian(alike), factors_from_gaussian(other)
    assert torch.equal(f_alike["hair_colour"], f_other["hair_colour"])
    assert torch.equal(f_alike["eye_colour"], factors_from_gaussian(codes)["eye_colour"])


def test_an_lr_contour_does_not_tell_who_it_shows():
    """The coarse look is per photo: at 8x8, two photos of one person are no closer than photos of two
    people (while at full size they are: the fine parts are the person's)."""
    photos = split_identities("test", ToySizes(test_identities=200, test_photos_per_identity=2))
    images = photos.render(range(len(photos)), 64).image.view(200, 2, 3, 64, 64)
    a, b = images[:, 0], images[:, 1]
    lr_a, lr_b = (lr_contour(x, 8, 64) for x in (a, b))
    same = (lr_a - lr_b).flatten(1).norm(dim=1).mean()
    other = (lr_a - lr_b.roll(1, 0)).flatten(1).norm(dim=1).mean()
    assert abs(same / other - 1) < 0.05
    # the fine parts do carry the person: inside the eye boxes of a fixed face, photos of one person at
    # one look and pose match exactly, and another person differs
    codes = photos.codes.view(200, 2, -1)
    same_look = with_look(codes[:, 1], codes[:, 0])
    same_look[:, list(PHOTO_DIMS)] = codes[:, 0][:, list(PHOTO_DIMS)]
    assert torch.equal(render_gaussian(same_look, 64).image, a)
    impostor = with_look(codes[:, 0].roll(1, 0), codes[:, 0])
    impostor[:, list(PHOTO_DIMS)] = codes[:, 0][:, list(PHOTO_DIMS)]
    assert ((render_gaussian(impostor, 64).image - a).flatten(1).abs().amax(1) > 0.1).all()


def test_photo_batches_cover_the_split_as_the_pairs_show_it(tmp_path):
    ds = ToyFaces("test", "lr", n_per_contour=10, cache_dir=tmp_path, sizes=SMALL)
    keys, persons, images = zip(*ds.photo_batches(batch_size=5))
    keys = [k for part in keys for k in part]
    assert keys == ds.keys and torch.equal(torch.cat(persons), ds.photos.identity)
    images = torch.cat(images)
    row = ds.manifest.rows[7]
    assert torch.equal(images[keys.index(row.identity)], ds[7]["identity"])
    assert torch.equal(images[keys.index(row.contour)], ds[7]["target"])


def test_dataset_items_and_modalities():
    for cond, channels in (("lr", 3), ("sketch", 1), ("mask", 19)):
        ds = ToyFaces("train", cond, lr_size=8, input_size=32, sizes=SMALL)
        item = ds[4]
        assert item["contour"].shape == (channels, 32, 32)
        assert item["target"].shape == item["identity"].shape == (3, 32, 32)
        assert item["same_identity"] and item["identity_id"] == item["contour_identity_id"] == 1
        assert not torch.equal(item["identity"], item["target"])  # another photo of the person
        if cond == "lr":
            assert torch.allclose(item["contour"], lr_contour(item["target"], 8, 32))
        if cond == "mask":
            assert torch.equal(item["contour"].sum(0), torch.ones(32, 32))


def test_test_manifest_protocol(tmp_path):
    ds = ToyFaces("test", "lr", n_per_contour=10, cache_dir=tmp_path, sizes=SMALL)
    rows = ds.manifest.rows
    assert len(ds) == len(rows) == 12 * 10 and ds.manifest.n_contours == 12
    assert all(r.same_identity and r.identity_id == r.contour_identity_id for r in rows)
    assert all(r.identity != r.contour for r in rows)
    files = list(tmp_path.glob("*.csv"))
    assert len(files) == 1 and tuple(read_manifest(files[0])) == rows
    again = ToyFaces("test", "lr", n_per_contour=10, cache_dir=tmp_path, sizes=SMALL)
    assert again.manifest.hash == ds.manifest.hash
    item = ds[13]
    row = rows[13]
    assert item["identity_id"] == row.identity_id and item["index"] == 13
    photo = ds.photos.render([ds.keys.index(row.contour)], 64).image[0]
    assert torch.equal(item["target"], photo)
    batch = ds.__getitems__([5, 13, 40])  # the DataLoader's batched path gives the same items
    assert all(torch.equal(batch[1][k], item[k]) if torch.is_tensor(item[k]) else batch[1][k] == item[k] for k in item)


def test_test_contours_are_photo_major_and_identity_images_distinct():
    """Every identity's first photo comes before any second photo, so a leading subset of the
    manifest spans identities; with 11 photos per identity a contour's 10 identity images are the
    person's 10 other photos, each once."""
    ds = ToyFaces("test", "lr", n_per_contour=10, sizes=dataclasses.replace(SMALL, test_photos_per_identity=11))
    contours = list(dict.fromkeys(r.contour for r in ds.manifest.rows))
    assert [r.contour_identity_id for r in ds.manifest.rows[::10]][:4] == sorted(set(ds.photos.identity.tolist()))
    assert [c[-2:] for c in contours] == [f"{k:02d}" for k in range(11) for _ in range(4)]
    for contour in contours:
        images = [r.identity for r in ds.manifest.rows if r.contour == contour]
        assert len(set(images)) == 10 and contour not in images
