"""experiments.reproduction on the tiny world: a 2-row suite (one trained method, PULSE) trains, evaluates on
one manifest, writes Markdown/CSV/JSON tables with the paper's numbers and ours, logs a W&B table,
and a second invocation trains and evaluates nothing."""

import csv
import json
import os
import pickle
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments.config import available_presets, load_config, run_name
from experiments.config_schema import ConfigError
from experiments.reproduction import parse_args, plan_tasks, reproduce, row_config, run_tasks
from experiments.runlock import RunFolderError
from experiments.tables import load_suite, suite_paths

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


def tiny_nets_in(root: Path) -> dict[str, Path]:
    """The paths write_tiny_networks(root) wrote."""
    return {
        k: root / f
        for k, f in {
            "g": "g.safetensors",
            "arc": "arc.safetensors",
            "arc_eval": "arc_eval.safetensors",
            "arc_eval_onnx": "arc_eval.onnx",
        }.items()
    }


def tiny_suite_args(nets: dict[str, Path], root: Path) -> list[str]:
    """reproduce tokens for the 2-row SUITE on the tiny networks, output under ``root/suite``."""
    suite = root / "tiny_table.yaml"
    suite.write_text(SUITE)
    return [
        f"table={suite}",
        *tiny_overrides(
            nets,
            root / "suite",
            **{"train.max_steps": 2, "eval.max_pairs": 4, "pulse.steps": 2, "pulse.gaussian_fit_samples": 512},
        ),
    ]


def shared_tiny_suite(tmp_path_factory) -> Path:
    """The tiny suite reproduced once per pytest session (report and notebook tests read it)."""
    root = tmp_path_factory.getbasetemp() / "shared_tiny_suite"
    if not (root / "first.json").is_file():
        first = reproduce(tiny_suite_args(write_tiny_networks(root / "nets"), root))
        (root / "first.json").write_text(json.dumps({k: first[k] for k in ("trained", "skipped", "wandb_id")}))
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
    assert parse_args(["table=2", "seeds=[0,1,2]", "train.lr=1"]) == (
        "2",
        [0, 1, 2],
        ["random", "same_identity"],
        1,
        ["train.lr=1"],
    )
    assert parse_args(["table=2", "jobs=2"])[3] == 2
    for bad_jobs in ("0", "two", "-1"):
        with pytest.raises(ConfigError, match=f"jobs={bad_jobs}: expected the number of worker processes"):
            parse_args(["table=2", f"jobs={bad_jobs}"])
    assert parse_args(["table=2", "protocols=[same_identity]"])[2] == ["same_identity"]
    with pytest.raises(ConfigError, match="protocols=cross"):
        parse_args(["table=2", "protocols=cross"])
    with pytest.raises(ConfigError, match="table=7"):
        suite_paths("7")
    bad = tmp_path / "bad.yaml"
    bad.write_text("world: toy\ncondition: lr\nrows: [{name: x}]\n")
    with pytest.raises(ConfigError, match="presets"):
        load_suite(bad)


def test_row_config_layers_world_row_overrides_and_seed():
    suite = load_suite(suite_paths("1")[0])
    pulse = next(r for r in suite.rows if r["name"] == "PULSE")
    cfg = row_config(suite, pulse, 2, ["train.lr=0.5"])
    assert (cfg.world, cfg.model.kind, cfg.pulse.seed, cfg.seed, cfg.train.lr) == ("toy", "pulse", 2, 2, 0.5)
    assert cfg.wandb.group == "ide-toy-lr" and cfg.generator.size == 32
    suite.world = "celebahq"
    real = row_config(suite, suite.rows[-1], 0, ["data.root=/data/celebahq"])
    assert real.generator.size == 1024 and real.generator.channels is None and real.model.identity_init == "pretrained"


def test_the_tasks_of_both_tables_train_each_run_once_and_put_the_longest_first():
    """jobs=N's plan for Tables 1 and 2, 2 seeds, both protocols: the runs shared by the tables (ReStyle =
    baseline, Ours) are one task each, a trained run's task evaluates both protocols after training,
    PULSE's evaluations are a task per protocol and seed, and the one-step pSp runs end the schedule. The tasks
    hold resolved configs, which reach a spawned worker whole (pickled, typed by the schema)."""
    suites = [load_suite(p, [0, 1]) for p in suite_paths("all")]
    runs = plan_tasks(suites, ["random", "same_identity"], ["train.cpu_threads=1"])
    names = [{run_name(c) for c in task} for task in runs]
    assert all(len(n) == 1 for n in names)  # a task is one run folder
    names = [n.pop() for n in names]
    pulse = [f"pulse-toy-lr-s{s}" for s in (0, 1)]
    trained = [f"{r}-toy-lr-s{s}" for r in ("baseline", "ifblock", "input_latent", "pretrained_id") for s in (0, 1)]
    assert sorted(names[:4]) == sorted(pulse * 2) and sorted(names[4:12]) == sorted(trained)
    assert names[12:] == ["psp-toy-lr-s0", "psp-toy-lr-s1"]
    assert [[c.data.test_pairing for c in task] for task in runs] == [["random"]] * 2 + [["same_identity"]] * 2 + [
        ["random", "same_identity"]
    ] * 10
    assert {c.train.cpu_threads for task in runs for c in task} == {1}
    sent = pickle.loads(pickle.dumps(runs[4][0]))
    assert sent == runs[4][0] and OmegaConf.get_type(sent) is OmegaConf.get_type(load_config([]))


@pytest.mark.slow
def test_tiny_suite_trains_once_and_tabulates(tmp_path_factory):
    suite = shared_tiny_suite(tmp_path_factory)
    first = json.loads((suite.parent / "first.json").read_text())
    # trained once; the second test protocol (same_identity) reuses the run
    assert first["trained"] == ["pretrained_id-toy-lr-s0"] and first["skipped"] == ["pretrained_id-toy-lr-s0"]
    assert first["wandb_id"]  # the reproduce run holding the W&B tables
    md = (suite / "tables" / "table9-random.md").read_text()
    assert "0.2740" in md and "57.66" in md and "0.0215" in md and "cross-identity" in md
    records = list(csv.DictReader((suite / "tables" / "table9-random.csv").open()))
    assert [r["row"] for r in records] == ["Ours", "PULSE"]
    run = suite / "pretrained_id-toy-lr-s0"
    results = json.loads((run / "eval" / "random" / "results.json").read_text())
    pulse = json.loads((suite / "pulse-toy-lr-s0" / "eval" / "random" / "results.json").read_text())
    assert results["manifest_sha256"] == pulse["manifest_sha256"] and results["test_pairing"] == "random"
    assert float(records[0]["identity_following_mean"]) == pytest.approx(
        results["metrics"]["identity_following"]["value"]
    )
    same = json.loads((run / "eval" / "same_identity" / "results.json").read_text())
    assert same["manifest_sha256"] != results["manifest_sha256"]
    same_records = list(csv.DictReader((suite / "tables" / "table9-same_identity.csv").open()))
    assert same_records[0]["identity_following_mean"] == ""  # undefined on same-person pairs
    ours = records[0]
    assert float(ours["lpips_mean"]) == pytest.approx(results["metrics"]["lpips"]["value"])
    assert float(ours["lpips_diff"]) == pytest.approx(results["metrics"]["lpips"]["value"] - 0.2740)
    assert f"{results['metrics']['lpips']['value']:.4f}" in md
    assert float(ours["lpips_ci_low"]) <= float(ours["lpips_mean"]) <= float(ours["lpips_ci_high"])
    summary = json.loads((run / "summary.json").read_text())
    assert ours["wandb_ids"] == summary["wandb_id"] and summary["wandb_id"] in md

    weights = run / "final" / "encoder.safetensors"
    stamp = weights.stat().st_mtime_ns
    second = reproduce(tiny_suite_args(tiny_nets_in(suite.parent / "nets"), suite.parent))
    assert second["trained"] == [] and second["skipped"] == ["pretrained_id-toy-lr-s0"] * 2
    assert not [e for e in second["log"] if e.startswith("eval ")]
    assert weights.stat().st_mtime_ns == stamp
    assert list(csv.DictReader((suite / "tables" / "table9-random.csv").open())) == records


@pytest.mark.slow
def test_the_trivial_answers_suite_scores_each_answer_where_it_belongs(tmp_path):
    """The shipped toy world's metrics on the trivial answers (ablations/tables/answers.yaml), cross-identity
    pairs: the target itself has LPIPS 0 and shows the contour's person; the identity photo itself has
    IDSIM 1 and is followed every time but keeps nothing of the contour; the LR contour and the average
    face carry no identity of the identity photo. If the judge could not tell these apart, no method's
    IDSIM or identity-following rate would mean anything."""
    tokens = ["data.options.test_identities=40", "eval.max_pairs=100", "wandb.mode=disabled"]
    reproduce(["table=ablations/tables/answers.yaml", "protocols=random", f"output_dir={tmp_path}", *tokens])
    rows = {r["row"]: r for r in csv.DictReader((tmp_path / "tables" / "tableanswers-random.csv").open())}
    value = lambda row, key: float(rows[row][f"{key}_mean"])  # noqa: E731
    assert value("copy the target", "lpips") == pytest.approx(0, abs=1e-6)
    assert value("copy the target", "identity_following") < 0.15
    assert value("copy the identity photo", "idsim") == pytest.approx(1, abs=1e-3)
    assert value("copy the identity photo", "identity_following") > 0.9
    assert value("copy the identity photo", "lpips") > value("copy the LR contour", "lpips")
    for row in ("copy the LR contour", "the average face"):
        assert value(row, "idsim") < 0.3 and 0.2 < value(row, "identity_following") < 0.8


@pytest.mark.slow
@pytest.mark.multiproc
def test_jobs_run_the_suite_in_worker_processes_as_one_process_would(tmp_path_factory, tmp_path, capsys):
    """jobs=2 trains and evaluates the tiny suite in worker processes; the tables are the sequential run's (up
    to the rounding of another thread count) and a second invocation reuses everything; a task that fails in
    a worker (a run folder of another config) is this command's error."""
    sequential = shared_tiny_suite(tmp_path_factory)
    args = tiny_suite_args(tiny_nets_in(sequential.parent / "nets"), tmp_path)
    out = reproduce([*args, "jobs=2"])
    assert out["trained"] == out["skipped"] == ["pretrained_id-toy-lr-s0"]  # trained, then skipped for protocol 2
    assert sorted(e for e in out["log"] if e.startswith("eval ")) == [
        "eval pretrained_id-toy-lr-s0 random",
        "eval pretrained_id-toy-lr-s0 same_identity",
        "eval pulse-toy-lr-s0 random",
        "eval pulse-toy-lr-s0 same_identity",
    ]
    assert "[3/3 tasks," in capsys.readouterr().err
    for protocol in ("random", "same_identity"):
        ours, theirs = (
            list(csv.DictReader((root / "tables" / f"table9-{protocol}.csv").open()))
            for root in (tmp_path / "suite", sequential)
        )
        assert [r["row"] for r in ours] == ["Ours", "PULSE"]
        for a, b in zip(ours, theirs, strict=True):
            for key in ("lpips_mean", "idsim_mean", "fid_mean"):
                assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-3, abs=1e-4), (a["row"], key)
    again = reproduce([*args, "jobs=2"])
    assert again["trained"] == [] and not [e for e in again["log"] if not e.startswith("skip-")]

    other = tmp_path / "other"
    held = other / "suite" / "pretrained_id-toy-lr-s0"
    held.mkdir(parents=True)
    saved = OmegaConf.load(tmp_path / "suite" / "pretrained_id-toy-lr-s0" / "config.yaml")
    saved.train.lr = 0.5
    OmegaConf.save(saved, held / "config.yaml")
    with pytest.raises(RunFolderError, match="holds a run of another config"):
        reproduce([*tiny_suite_args(tiny_nets_in(sequential.parent / "nets"), other), "jobs=2"])


def _meets_the_other_worker(task, conn):
    """A run_tasks worker for the tests: ``task`` = [folder, name, what]; writes ``<name>.pid``, waits (up to
    60 s) until the other task has written its own, then does ``what``: ok (reports a log line), fail
    (reports an error), die (exits without a report) or wait (forever)."""
    folder, name, what = Path(task[0]), task[1], task[2]
    (folder / f"{name}.pid").write_text(str(os.getpid()))
    deadline = time.time() + 60
    while what == "wait" or len(list(folder.glob("*.pid"))) < 2:
        assert time.time() < deadline, "the other worker never started"
        time.sleep(0.05)
    if what == "die":
        os._exit(3)
    if what == "fail":
        conn.send((None, ValueError(f"{name} failed"), "the worker's traceback"))
    else:
        conn.send(([f"done {name}"], None, None))


@pytest.mark.multiproc
def test_run_tasks_runs_jobs_at_once_and_stops_on_the_first_failure(tmp_path, capsys):
    """Two tasks on jobs=2 run at the same time (each waits for the other to start); a task that fails or whose
    process dies is raised as such, and the task still running is terminated."""
    log = []
    run_tasks([[str(tmp_path), "a", "ok"], [str(tmp_path), "b", "ok"]], 2, log, _meets_the_other_worker)
    assert sorted(log) == ["done a", "done b"] and "[2/2 tasks," in capsys.readouterr().err

    for what, error in (("fail", "c failed"), ("die", "died \\(exit code 3\\) mid-task")):
        folder = tmp_path / what
        folder.mkdir()
        with pytest.raises((ValueError, RuntimeError), match=error) as raised:
            run_tasks([[str(folder), "c", what], [str(folder), "w", "wait"]], 2, [], _meets_the_other_worker)
        if what == "fail":
            assert "the worker's traceback" in str(raised.value.__cause__)
        with pytest.raises(ProcessLookupError):  # terminated and reaped
            os.kill(int((folder / "w.pid").read_text()), 0)
