"""Shipping the toy IDE encoder from a finished run."""

import pytest
import torch
from omegaconf import OmegaConf

from experiments.toy_pretraining.cli import main
from experiments.toy_pretraining.encoder import ship_encoder
from models.weights import PRETRAINED_DIR, SHIPPED_ENCODERS


@pytest.mark.parametrize("recorded", [True, False])
def test_encoder_ships_a_run_fp16_with_its_generator_fingerprint(tmp_path, recorded):
    """`encoder --run` writes <out>/toy_ide/ (fp16 encoder + the run's config) that load_pipeline loads;
    the generator fingerprint is carried over, or (a run exported before fingerprints) stamped from the
    generator its config names."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from experiments.pipeline import load_pipeline
    from models.weights import state_fingerprint
    from tests.experiments.test_pipeline import make_tiny_run

    run, model = make_tiny_run(tmp_path / "world")
    source = run / "final" / "encoder.safetensors"
    if not recorded:
        save_file(load_file(str(source)), str(source))
    launched = OmegaConf.load(run / "final" / "config.yaml")
    launched.resume = "auto"  # as reproduce.py launches its runs
    OmegaConf.save(launched, run / "final" / "config.yaml")
    main(["encoder", "--run", str(run), "--out-dir", str(tmp_path / "out")])
    shipped = tmp_path / "out" / "toy_ide"
    # the run's config, but for its output folder (a path on the training machine) and its launch mode: the
    # schema's defaults
    config, trained = (OmegaConf.load(p / "config.yaml") for p in (shipped, run / "final"))
    assert trained.output_dir != "runs" and config.output_dir == "runs"
    assert trained.resume == "auto" and config.resume is None
    config.output_dir, config.resume = trained.output_dir, trained.resume
    assert config == trained
    with safe_open(str(shipped / "encoder.safetensors"), framework="pt") as f:
        assert f.metadata()["generator"] == state_fingerprint(model.decoder)
        assert {f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()} == {torch.float16}
    first = (shipped / "encoder.safetensors").read_bytes()
    for _ in range(3):  # identical re-exports are byte-identical (a registered sha256 can be re-made)
        assert ship_encoder(tmp_path / "out", run)["run"] == str(run)
        assert (shipped / "encoder.safetensors").read_bytes() == first
    pipe = load_pipeline(shipped)
    for (k, v), (k2, v2) in zip(
        sorted(pipe.model.encoder.state_dict().items()), sorted(model.encoder.state_dict().items())
    ):
        assert k == k2 and torch.equal(v, v2.half().to(v.dtype) if v.is_floating_point() else v2), k


def test_the_shipped_encoder_is_trained_as_the_converged_tables_ours_row():
    """`ideface-pretrain-toy encoder` trains the run that `reproduce.py table=2 recipe=toy_long` trains for
    its Ours row at seed 0 (same training config), so one run is both the shipped encoder and that row; the
    shipped file's own config is that recipe's (it was not trained with another one)."""
    from experiments.config import load_config, read_saved_config
    from experiments.provenance import config_difference
    from experiments.reproduction import row_config
    from experiments.tables import load_suite, suite_paths
    from experiments.toy_pretraining.encoder import RUN_ARGS

    (path,) = suite_paths("2")
    suite = load_suite(path, seeds=[0])
    (ours,) = [row for row in suite.rows if row["name"] == "Ours"]
    table = row_config(suite, ours, 0, ["recipe=toy_long"])
    shipped = load_config([*RUN_ARGS, "seed=0"])
    assert config_difference(shipped, table) == []
    assert shipped.train.max_steps == table.train.max_steps == 2400
    # another recipe is another run: the steps differ (checked apart from config_difference, as a run's length)
    assert row_config(suite, ours, 0, ["recipe=toy_tables"]).train.max_steps != shipped.train.max_steps
    trained = read_saved_config(PRETRAINED_DIR / SHIPPED_ENCODERS["toy"] / "config.yaml")
    assert config_difference(trained, shipped) == []
    assert trained.train.max_steps == shipped.train.max_steps
