import pytest


def test_pulse_vs_encoder_toy(bench):
    argv = "pulse-vs-encoder --worlds toy --batches 2 --n-iters 2 --pulse-steps 2 --gaussian-fit-samples 1000"
    (row,) = bench([*argv.split(), "--warmup", "0"])["results"]
    assert row["pulse_steps_run"] == 2 and row["pulse_steps"] > 2  # the config's steps, scaled linearly
    assert row["pulse_over_encoder"] == pytest.approx(row["pulse_s_per_image"] / row["encoder_s_per_image"], rel=0.05)
