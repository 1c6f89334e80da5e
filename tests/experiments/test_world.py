"""Worlds named by config: the dataset's own options and the people a rendering world can draw."""

import torch

from experiments.config import load_config
from experiments.world import build_dataset, dataset_class, reference_images, rendered_people


def test_a_rendering_world_draws_its_test_people_and_a_world_of_files_has_none():
    cfg = load_config(["data.options.train_identities=5", "data.options.test_identities=4"])
    people = rendered_people(cfg)
    assert people.identity.unique().tolist() == [5, 6, 7, 8]  # test ids follow the train ids
    photos = people.render([0, 1], size=32)
    assert photos.image.shape == (2, 3, 32, 32) and photos.labels.shape == (2, 32, 32)
    assert rendered_people(cfg, "train").identity.unique().tolist() == [0, 1, 2, 3, 4]
    files = load_config(["world=celebahq", "data.root=/nonexistent"])
    assert not hasattr(dataset_class(files.data), "people") and rendered_people(files) is None


def test_the_fid_reference_is_the_train_targets_in_order():
    cfg = load_config(["data.options.train_identities=4", "data.options.photos_per_identity=3"])
    targets = torch.stack([item["target"] for item in build_dataset(cfg, "train")])
    batches = list(reference_images(cfg, 7, batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert torch.equal(torch.cat(batches), targets[:7])
    assert torch.equal(torch.cat(list(reference_images(cfg, 100, batch_size=5))), targets)  # n > the split
