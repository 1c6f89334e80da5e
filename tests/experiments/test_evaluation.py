"""Evaluation over the test manifest: results.json with intervals and provenance, chunk resume,
and 2-process evaluation equal to 1-process on the same pairs."""

import json
import subprocess
import sys

import pytest

from experiments.config import REPO_ROOT, load_config
from experiments.evaluation import contour_chunks, select_pairs
from tests.conftest import subprocess_env

from .conftest import tiny_overrides, two_process_launcher

EVAL = str(REPO_ROOT / "experiments" / "evaluate.py")


def test_select_pairs_keeps_whole_contours():
    contours = ["a"] * 3 + ["b"] * 3 + ["c"] * 2
    assert select_pairs(contours, None) == 8
    assert select_pairs(contours, 4) == 6
    assert select_pairs(contours, 6) == 6
    assert select_pairs(contours, 100) == 8


def test_contour_chunks_cover_every_pair_once_and_end_at_contour_boundaries():
    contours = ["a"] * 3 + ["b"] * 3 + ["c"] * 2 + ["d"]
    assert contour_chunks(contours, 4) == [(0, 6), (6, 9)]
    assert contour_chunks(contours, 1) == [(0, 3), (3, 6), (6, 8), (8, 9)]
    assert contour_chunks(contours, 100) == [(0, 9)]
    assert contour_chunks([], 4) == []


@pytest.fixture(scope="module")
def trained_run(tiny_nets, tmp_path_factory):
    from experiments.train import train

    out = tmp_path_factory.mktemp("eval_run")
    cfg = load_config(tiny_overrides(tiny_nets, out, **{"train.max_steps": 2, "wandb.mode": "disabled"}))
    return train(cfg)


def run_eval(run_dir, *extra, launcher=None, env=None):
    cmd = (launcher or [sys.executable]) + [EVAL, f"checkpoint={run_dir}", "eval.max_pairs=6", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=subprocess_env(env))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.mark.slow
def test_results_json_resume_and_two_processes(trained_run, tmp_path):
    out = run_eval(trained_run)
    assert "| run | test pairs | pairs |" in out.stdout
    results = json.loads((trained_run / "eval" / "random" / "results.json").read_text())
    assert results["n_pairs"] == 6 and results["n_contours"] == 3 and results["test_pairing"] == "random"
    m = results["metrics"]
    for key in ("lpips", "idsim", "idsim_identity_person", "idsim_contour_person", "identity_following"):
        lo, hi = m[key]["ci"]
        assert lo <= m[key]["value"] <= hi and m[key]["n_pairs"] == 6
    assert 0 <= m["identity_following"]["value"] <= 1
    assert m["fid"]["value"] > 0 and m["fid"]["n_blocks"] == 2  # chunks (0, 4), (4, 6) at eval.batch_size=4
    assert m["fid"]["ci"][0] <= m["fid"]["value"] <= m["fid"]["ci"][1] and m["fid"]["se"] > 0
    assert len(results["manifest_sha256"]) == 64 and len(results["checkpoint_sha256"]) == 64
    assert "toy" in results["networks"]["world"] and results["images_per_s"] > 0

    chunks = sorted((trained_run / "eval" / "random" / "chunks").glob("chunk_*.npz"))
    stamps = [c.stat().st_mtime_ns for c in chunks]
    run_eval(trained_run)  # resumes: every chunk is reused, none recomputed
    assert [c.stat().st_mtime_ns for c in chunks] == stamps

    import shutil

    shutil.rmtree(trained_run / "eval")
    launcher = two_process_launcher(29519)
    run_eval(trained_run, launcher=launcher, env={"ACCELERATE_USE_CPU": "1"})
    two = json.loads((trained_run / "eval" / "random" / "results.json").read_text())
    assert two["processes"] == 2 and two["n_pairs"] == results["n_pairs"]
    for key in ("lpips", "idsim", "identity_following", "fid"):
        assert two["metrics"][key]["value"] == pytest.approx(m[key]["value"], rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_dlib_judge_adds_its_columns(trained_run, tmp_path):
    """eval.dlib_judge=true (the celebahq world's setting) adds dlib's distance and same-person rate, with
    intervals, to results.json, the networks record and the table; toy faces are not human, so only the
    plumbing is checked here (tests/metrics/test_dlib_idsim.py judges real faces)."""
    from experiments.evaluation import evaluate, format_table, load_eval_config
    from models import dlibface

    if not dlibface.available():
        pytest.skip(f"dlib not installed ({dlibface.INSTALL})")
    cfg, run_dir = load_eval_config(
        [f"checkpoint={trained_run}", "eval.max_pairs=6", "eval.dlib_judge=true", "wandb.mode=disabled"]
    )
    results = evaluate(cfg, run_dir, out_dir=tmp_path / "eval")
    m = results["metrics"]
    for key in ("dlib_distance", "dlib_same_person"):
        lo, hi = m[key]["ci"]
        assert lo <= m[key]["value"] <= hi
    assert m["dlib_distance"]["value"] > 0 and 0 <= m["dlib_same_person"]["value"] <= 1
    assert results["networks"]["dlib"].startswith("dlib-resnet(")
    table = format_table([results])
    assert "dlib same person (higher)" in table.splitlines()[0] and table.splitlines()[2].count("|") == 11


@pytest.mark.slow
def test_trivial_answers_are_evaluated_like_methods(tiny_nets, tmp_path):
    """method=<answer> evaluates with no run folder: copying the target scores LPIPS 0, copying the identity
    photo scores IDSIM 1, the average face is one image for every pair, and a label-map contour is drawn
    in colour to be copied; each answer's kind is part of what its chunks were computed from."""
    from experiments.evaluation import evaluate
    from models.answers import ANSWERS

    results = {}
    for name in ANSWERS:
        cfg = load_config(
            [f"method={name}", *tiny_overrides(tiny_nets, tmp_path, **{"eval.max_pairs": 6, "wandb.mode": "disabled"})]
        )
        results[name] = evaluate(cfg)
        assert (tmp_path / f"{name}-toy-lr-s0-eval" / "random" / "results.json").is_file()
    m = {name: r["metrics"] for name, r in results.items()}
    assert m["copy_target"]["lpips"]["value"] == pytest.approx(0, abs=1e-6)
    assert m["copy_identity"]["idsim"]["value"] == pytest.approx(1, abs=1e-4)
    assert m["average_face"]["lpips"]["value"] > 0.01 and m["copy_contour"]["lpips"]["value"] > 0.01
    assert all(r["checkpoint_sha256"] is None and r["n_pairs"] == 6 for r in results.values())
    kinds = {r["evaluation_settings"]["per_pair"]["kind"] for r in results.values()}
    assert kinds == set(ANSWERS)

    extra = {"eval.max_pairs": 2, "wandb.mode": "disabled", "data.condition": "mask"}
    mask = evaluate(load_config(["method=copy_contour", *tiny_overrides(tiny_nets, tmp_path, **extra)]))
    assert mask["condition"] == "mask" and mask["metrics"]["lpips"]["value"] > 0.01
