"""Worlds named by config: the dataset's own options and the people a rendering world can draw."""

from experiments.config import load_config
from experiments.world import dataset_class, rendered_people


def test_a_rendering_world_draws_its_test_people_and_a_world_of_files_has_none():
    cfg = load_config(["data.options.train_identities=5", "data.options.test_identities=4"])
    people = rendered_people(cfg)
    assert people.identity.unique().tolist() == [5, 6, 7, 8]  # test ids follow the train ids
    photos = people.render([0, 1], size=32)
    assert photos.image.shape == (2, 3, 32, 32) and photos.labels.shape == (2, 32, 32)
    assert rendered_people(cfg, "train").identity.unique().tolist() == [0, 1, 2, 3, 4]
    files = load_config(["world=celebahq", "data.root=/nonexistent"])
    assert not hasattr(dataset_class(files.data), "people") and rendered_people(files) is None
