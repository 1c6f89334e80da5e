"""Every notebook in notebooks/ runs clean (papermill) on a tiny suite reproduced in this session on
the tiny world, and is stored without outputs and with a `parameters` cell."""

import json
from pathlib import Path

import nbformat
import pytest

from experiments.config import REPO_ROOT
from tests.experiments.conftest import tiny_overrides
from tests.experiments.test_reproduction import shared_tiny_suite, tiny_nets_in

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return shared_tiny_suite(tmp_path_factory)


def parameters_for(name: str, suite: Path) -> dict:
    run = str(suite / "pretrained_id-toy-lr-s0")
    nets = tiny_nets_in(suite.parent / "nets")
    pulse = ["method=pulse", *tiny_overrides(nets, suite, **{"pulse.steps": 2, "pulse.gaussian_fit_samples": 512})]
    return {
        "reproduce_tables": {"suite_dir": str(suite), "tables": [9]},
        "qualitative": {
            "methods": {"PULSE": "pulse", "Ours": run},
            "pulse_args": pulse,
            "modalities": {"LR": run},
            "n_pairs": 2,
        },
        "identity_ambiguity": {"run_dir": run, "contour_index": 1, "n_identities": 3},
    }[name]


def test_every_notebook_is_stored_clean_with_parameters():
    assert {p.stem for p in NOTEBOOKS} == {"reproduce_tables", "qualitative", "identity_ambiguity"}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), path.name
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_tiny_suite(path, suite, tmp_path):
    import papermill

    out = tmp_path / path.name
    papermill.execute_notebook(
        str(path),
        str(out),
        parameters=parameters_for(path.stem, suite),
        cwd=str(REPO_ROOT / "notebooks"),
        kernel_name="python3",
        progress_bar=False,
        execution_timeout=300,
    )
    nb = json.loads(out.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    kinds = {k for o in outputs for k in o.get("data", {})}
    if path.stem == "reproduce_tables":
        assert "image/svg+xml" in kinds and "text/markdown" in kinds
        text = json.dumps(outputs)
        assert "0.2740" in text and "Table 9" in text
    else:
        assert "image/png" in kinds  # the grids were drawn


def test_notebooks_do_not_import_matplotlib():
    # The environment has no matplotlib: charts are SVG (experiments.report), images PIL.
    for path in NOTEBOOKS:
        assert "matplotlib" not in path.read_text(), path.name
