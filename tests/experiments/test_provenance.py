"""Results carry their provenance: retrained in place, a run evaluates to new figures (no leftover chunk is
reused); a changed evaluation setting recomputes; reproduce's reuse and "finished" follow the records."""

import json
import shutil

import numpy as np
import pytest

from experiments.config import load_config
from experiments.provenance import (
    completed_run,
    config_difference,
    evaluation_settings,
    results_match,
    results_provenance,
)

from .conftest import tiny_overrides


def tokens_of(nets, out, **extra):
    return tiny_overrides(nets, out, **{"train.max_steps": 2, "wandb.mode": "disabled", **extra})


def chunk_stamps(run_dir):
    return {p.name: p.stat().st_mtime_ns for p in (run_dir / "eval" / "random" / "chunks").glob("chunk_*.npz")}


@pytest.mark.slow
def test_retrained_in_place_evaluates_to_new_figures(tiny_nets, tmp_path):
    from experiments.evaluation import evaluate_run, load_eval_config
    from experiments.reproduction import run_row_seed
    from experiments.train import train
    from models.weights import sha256_of

    run_dir = train(load_config(tokens_of(tiny_nets, tmp_path)))
    assert completed_run(run_dir, 2) is None
    assert "not train.max_steps=4" in completed_run(run_dir, 4)
    first = evaluate_run(run_dir)
    stamps = chunk_stamps(run_dir)
    assert first["checkpoint_sha256"] == sha256_of(run_dir / "final" / "encoder.safetensors")
    assert first["evaluation_settings"]["per_pair"]["n_iters"] == 2
    with np.load(next((run_dir / "eval" / "random" / "chunks").glob("chunk_*.npz"))) as chunk:
        assert len(str(chunk["provenance_key"])) == 64

    again = evaluate_run(run_dir)  # same checkpoint: every chunk reused
    assert chunk_stamps(run_dir) == stamps and again["metrics"]["lpips"] == first["metrics"]["lpips"]

    # retrain in place (two more steps into the same folder), then evaluate: new checkpoint, new figures
    train(load_config(tokens_of(tiny_nets, tmp_path, **{"train.max_steps": 4, "resume": "latest"})))
    assert completed_run(run_dir, 4) is None
    second = evaluate_run(run_dir)
    assert second["checkpoint_sha256"] != first["checkpoint_sha256"]
    assert all(chunk_stamps(run_dir)[name] != stamp for name, stamp in stamps.items())  # all recomputed
    assert second["metrics"]["lpips"]["value"] != first["metrics"]["lpips"]["value"]
    saved = json.loads((run_dir / "eval" / "random" / "results.json").read_text())
    assert saved["metrics"]["lpips"] == second["metrics"]["lpips"]

    # a setting that changes the figures recomputes too
    cfg, _ = load_eval_config([f"checkpoint={run_dir}", "eval.n_iters=1"])
    expected = results_provenance(second["checkpoint_sha256"], second["manifest_sha256"], evaluation_settings(cfg))
    assert results_match(saved, expected) == "its evaluation_settings differ from this evaluation's"

    # reproduce: the run is finished (its record), results.json matches -> both reused
    log = []
    row_cfg = load_config(tokens_of(tiny_nets, tmp_path, **{"train.max_steps": 4}))
    run_row_seed(row_cfg, log)
    assert log == ["skip-train ide-toy-lr-s0", "skip-eval ide-toy-lr-s0 random"]
    # an encoder replaced behind the run's back is not "finished", and stale results are not reused
    shutil.copy(
        tmp_path / "ide-toy-lr-s0" / "checkpoints" / "step_2" / "model.safetensors",
        run_dir / "final" / "encoder.safetensors",
    )
    assert "is not the encoder it exported" in completed_run(run_dir, 4)


@pytest.mark.slow
def test_reproduce_refuses_a_folder_of_another_training_config(tiny_nets, tmp_path):
    from experiments.reproduction import run_row_seed
    from experiments.runlock import RunFolderError
    from experiments.train import train

    train(load_config(tokens_of(tiny_nets, tmp_path)))
    with pytest.raises(RunFolderError, match=r"holds a run of another config \(differs in train.lr\)"):
        run_row_seed(load_config(tokens_of(tiny_nets, tmp_path, **{"train.lr": 3e-4})), [])


def test_training_config_ignores_what_does_not_change_the_weights():
    a = load_config([])
    b = load_config(
        [
            "eval.max_pairs=5",
            "wandb.mode=disabled",
            "resume=auto",
            "train.max_steps=3",
            "train.val_every=7",
            "data.test_pairing=same_identity",
            "output_dir=elsewhere",
        ]
    )
    assert config_difference(a, b) == []
    assert config_difference(a, load_config(["train.lr=3e-4", "model.n_iters=2"])) == ["model.n_iters", "train.lr"]


def test_results_match_names_what_differs():
    cfg = load_config([])
    expected = results_provenance("a" * 64, "b" * 64, evaluation_settings(cfg))
    saved = json.loads(json.dumps(expected))
    assert results_match(saved, expected) is None
    assert (
        results_match({**saved, "checkpoint_sha256": "c" * 64}, expected)
        == "its checkpoint_sha256 differ from this evaluation's"
    )
    assert results_match({}, expected).startswith("its checkpoint_sha256, manifest_sha256, evaluation_settings")


def test_pulse_compile_counts_only_when_on():
    """PULSE's settings are its whole config; the compile knob (newer than many stored evaluations) is
    left out at its default, so those still match, and counts when on, as it changes the rounding."""
    off, on = (evaluation_settings(load_config(["method=pulse", *t])) for t in ([], ["pulse.compile=true"]))
    assert "compile" not in off["per_pair"]["pulse"] and off["per_pair"]["pulse"]["steps"] == 100
    assert on["per_pair"]["pulse"]["compile"] is True
    assert results_match(results_provenance(None, "b" * 64, on), results_provenance(None, "b" * 64, off))
