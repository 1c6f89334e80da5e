"""The toy renderer: determinism, shapes and ranges, label maps and sketches agree with the image, each
part of the code in its dims, and identity apart from the per-photo look (an LR contour does not tell who
it shows)."""

import torch

from data.conditions import lr_contour
from data.toyfaces.dataset import ToySizes, split_identities
from data.toyfaces.render import (
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
    assemble,
    factors_from_gaussian,
    render_gaussian,
    with_look,
)


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
