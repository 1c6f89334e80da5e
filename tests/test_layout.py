"""The installed packages are this repository's, not another distribution's same-named ones."""

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["models", "losses", "data", "metrics", "ops", "experiments"])
def test_package_resolves_inside_repo(name):
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().is_relative_to(REPO), module.__file__


def test_fixed_top_level_layout():
    for folder in [
        "models",
        "losses",
        "data",
        "experiments",
        "ablations",
        "metrics",
        "ops",
        "notebooks",
        "tests",
        ".ci",
    ]:
        assert (REPO / folder).is_dir(), folder
    assert (REPO / "pyproject.toml").is_file() and (REPO / "README.md").is_file()
