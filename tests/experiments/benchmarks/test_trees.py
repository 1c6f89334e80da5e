import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
INFERENCE = "inference --pairs 2 --batch 2 --iters 1 --warmup 0".split()


@pytest.mark.slow
def test_trees_runs_a_copy_of_the_benchmarks_against_a_checkout_without_them(bench, tmp_path):
    """The reference: this checkout's packages, but an experiments/ with no benchmarks package (as in
    checkouts older than it). The runner copy measures it all the same, with the reference's packages."""
    reference = tmp_path / "reference"
    reference.mkdir()
    for package in ("ops", "models", "data", "losses", "metrics"):
        (reference / package).symlink_to(REPO / package)
    ignore = shutil.ignore_patterns("benchmarks", "benchmark.py", "__pycache__")
    shutil.copytree(REPO / "experiments", reference / "experiments", ignore=ignore)
    trees = bench(["trees", "--reference", str(reference), "--rounds", "1", "--", *INFERENCE])
    assert trees["code_roots"] == {"reference": str(reference), "this": str(REPO)}
    assert len(trees["per_round"]["reference"]) == 1 and len(trees["speedup_this_over_reference"]) == 2
    assert all(s > 0 for s in trees["speedup_this_over_reference"])


def test_trees_refuses_a_folder_that_is_no_checkout(tmp_path):
    from experiments.benchmarks.cli import run

    with pytest.raises(SystemExit, match="is not a checkout of this project"):
        run(["trees", "--reference", str(tmp_path), "--", *INFERENCE])
