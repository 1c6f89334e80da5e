"""report.py on a tiny reproduced suite: the offline HTML/Markdown hold the table numbers, the loss
curves and the embedded validation grids; the W&B Report is built (not saved) with the expected blocks."""

import base64
import json

import pytest

from experiments.report import main
from experiments.reporting import (
    VALIDATION_METRICS,
    build_wandb_report,
    loss_curves,
    svg_line_chart,
    validation_curves,
    validation_table,
)
from experiments.tables import METRICS

from .test_reproduction import shared_tiny_suite


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return shared_tiny_suite(tmp_path_factory)


def test_svg_line_chart_scales_points_into_the_plot():
    svg = svg_line_chart({"a": ([0, 10], [1.0, 3.0])}, "t", width=200, height=100)
    pts = svg.split('points="')[1].split('"')[0].split()
    (x0, y0), (x1, y1) = (tuple(float(v) for v in p.split(",")) for p in pts)
    assert x0 < x1 and y0 > y1  # higher loss is drawn higher up
    assert 0 <= min(x0, x1) and max(x0, x1) <= 200 and 0 <= min(y0, y1) and max(y0, y1) <= 100


def test_validation_curves_keep_the_logged_metrics_in_step_order(tmp_path):
    rows = [
        {"step": 10, "train/loss": 3.0},
        {"step": 100, "val/lpips": 2.5, "val/idsim": 0.1, "val/identity_following": float("nan"), "val/fid": 1.2},
        {"step": 200, "val/lpips": 2.0, "val/idsim": 0.3, "val/identity_following": 0.75, "val/fid": 0.9},
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    curves = validation_curves(tmp_path)
    assert list(curves) == list(VALIDATION_METRICS)
    assert curves["lpips"] == ([100, 200], [2.5, 2.0])
    assert curves["identity_following"] == ([200], [0.75])  # NaN (no cross pair) is left out
    table = validation_table(curves).splitlines()
    assert table[0].startswith("| step | LPIPS") and len(table) == 4
    assert table[2] == "| 100 | 2.500 | 0.100 | – | 1.20 |"
    assert table[3] == "| 200 | 2.000 | 0.300 | 0.750 | 0.90 |"
    assert validation_curves(tmp_path / "absent") == {}


@pytest.mark.slow
def test_offline_report_has_tables_curves_and_images(suite, capsys):
    assert main([str(suite)]) == 0
    page = (suite / "report.html").read_text()
    md = (suite / "report.md").read_text()
    table = json.loads((suite / "tables" / "table9-random.json").read_text())
    ours = table["records"][0]
    for text in (page, md):
        assert f"{ours['lpips_mean']:.4f}" in text and f"{ours['idsim_mean']:.4f}" in text
        assert "0.2740" in text and "57.66" in text and ours["wandb_ids"] in text
    run = suite / "pretrained_id-toy-lr-s0"
    grid = sorted((run / "media").glob("val_grid_*.png"))[-1]
    assert base64.b64encode(grid.read_bytes()).decode() in page
    # per test protocol (2): a bar chart per metric, the trained row's loss curves and validation curves
    validation = validation_curves(run)
    assert "lpips" in validation
    assert page.count("<svg") == 2 * (len(METRICS) + 1 + len(validation))
    assert validation_table(validation) in md
    assert "train/loss" in page and "train/loss" in loss_curves(run)
    assert "src='http" not in page  # self-contained


def test_missing_tables_is_one_clear_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "reproduce.py" in capsys.readouterr().err


@pytest.mark.slow
def test_wandb_report_is_built_without_saving(suite):
    import wandb_workspaces.reports.v2 as wr

    report = build_wandb_report(suite, project="ideface-test", entity="someone")
    kinds = [type(b).__name__ for b in report.blocks]
    # per test protocol (random, same_identity); PULSE trains nothing: no grid
    assert kinds == ["H1", "P"] + ["H2", "MarkdownBlock", "H3", "PanelGrid"] * 2
    grid = report.blocks[5]
    assert isinstance(grid, wr.PanelGrid) and grid.runsets[0].query == "pretrained_id-toy-lr"
    assert grid.runsets[0].project == "ideface-test"
    assert [type(p).__name__ for p in grid.panels] == ["LinePlot"] * (1 + len(VALIDATION_METRICS)) + ["MediaBrowser"]
    assert [p.y for p in grid.panels[1:-1]] == [[f"val/{m}"] for m in VALIDATION_METRICS]
    assert "0.2740" in report.blocks[3].text
