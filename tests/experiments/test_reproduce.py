"""reproduce.py on the tiny world: a 2-row suite (one trained method, PULSE) trains, evaluates on
one manifest, writes Markdown/CSV/JSON tables with the paper's numbers and ours, logs a W&B table,
and a second invocation trains and evaluates nothing."""

import csv
import json
from pathlib import Path

import pytest

from experiments.config import ConfigError, available_presets
from experiments.reproduce import load_suite, parse_args, reproduce, suite_paths

from .conftest import tiny_overrides, write_tiny_networks

SUITE = """\
table: 9
title: "Tiny table"
world: toy
condition: lr
seeds: [0]
rows:
  - name: Ours
    presets: [ablation=pretrained_id]
    paper: {lpips: 0.2740, idsim: 0.7733, fid: 57.6614}
  - name: PULSE
    presets: [method=pulse]
    overrides: ["pulse.seed={seed}"]
    paper: {lpips: 0.2758, idsim: 0.0215, fid: 29.6793}
"""


def tiny_suite_args(nets, tmp_path, suite_yaml=SUITE):
    suite = tmp_path / "tiny_table.yaml"
    suite.write_text(suite_yaml)
    return [f"table={suite}", *tiny_overrides(nets, tmp_path / "suite", **{
        "train.max_steps": 2, "eval.max_pairs": 4, "pulse.steps": 2, "pulse.gaussian_fit_samples": 512})]


def shared_tiny_suite(tmp_path_factory) -> Path:
    """The tiny suite reproduced once per pytest session (report and notebook tests read it)."""
    root = tmp_path_factory.getbasetemp() / "shared_tiny_suite"
    if not (root / "suite" / "tables" / "table9.json").is_file():
        reproduce(tiny_suite_args(write_tiny_networks(root / "nets"), root))
    return root / "suite"


def test_shipped_suites_list_the_papers_rows():
    t1, t2 = (load_suite(p) for p in suite_paths("all"))
    assert [r["name"] for r in t1.rows] == ["pSp", "ReStyle", "PULSE", "Ours"]
    assert [r["name"] for r in t2.rows] == ["baseline", "+IFBlock", "+Input Latent", "Ours"]
    assert t2.rows[2]["paper"] == {"lpips": 0.2782, "idsim": 0.7620, "fid": 60.8977}
    assert t1.rows[-1]["presets"] == t2.rows[-1]["presets"]  # "Ours" is one set of runs for both tables
    assert not [n for n in available_presets("ablation") if n.startswith("table")]


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="table=1"):
        parse_args(["seeds=[0,1]"])
    assert parse_args(["table=2", "seeds=[0,1,2]", "train.lr=1"]) == ("2", [0, 1, 2], ["train.lr=1"])
    with pytest.raises(ConfigError, match="table=7"):
        suite_paths("7")
    bad = tmp_path / "bad.yaml"
    bad.write_text("world: toy\ncondition: lr\nrows: [{name: x}]\n")
    with pytest.raises(ConfigError, match="presets"):
        load_suite(bad)


@pytest.mark.slow
def test_tiny_suite_trains_once_and_tabulates(tiny_nets, tmp_path):
    args = tiny_suite_args(tiny_nets, tmp_path)
    first = reproduce(args)
    assert first["trained"] == ["pretrained_id-toy-lr-s0"] and first["skipped"] == []
    paths = first["tables"]["9"]
    md = paths["md"].read_text()
    assert "0.2740" in md and "57.66" in md and "0.0215" in md
    records = list(csv.DictReader(paths["csv"].open()))
    assert [r["row"] for r in records] == ["Ours", "PULSE"]
    results = json.loads((tmp_path / "suite" / "pretrained_id-toy-lr-s0" / "eval" / "results.json").read_text())
    ours = records[0]
    assert float(ours["lpips_mean"]) == pytest.approx(results["metrics"]["lpips"]["value"])
    assert float(ours["lpips_diff"]) == pytest.approx(results["metrics"]["lpips"]["value"] - 0.2740)
    assert f"{results['metrics']['lpips']['value']:.4f}" in md
    assert float(ours["lpips_ci_low"]) <= float(ours["lpips_mean"]) <= float(ours["lpips_ci_high"])
    summary = json.loads((tmp_path / "suite" / "pretrained_id-toy-lr-s0" / "summary.json").read_text())
    assert ours["wandb_ids"] == summary["wandb_id"] and summary["wandb_id"] in md
    assert first["wandb_id"]

    weights = tmp_path / "suite" / "pretrained_id-toy-lr-s0" / "final" / "encoder.safetensors"
    stamp = weights.stat().st_mtime_ns
    second = reproduce(args)
    assert second["trained"] == [] and second["skipped"] == ["pretrained_id-toy-lr-s0"]
    assert not [e for e in second["log"] if e.startswith("eval ")]
    assert weights.stat().st_mtime_ns == stamp
    assert list(csv.DictReader(paths["csv"].open())) == records
