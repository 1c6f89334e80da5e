import pytest

from experiments.benchmarks.worlds import REFERENCE_STEP, ROWS
from tests.experiments.benchmarks.conftest import BF16_PSP_ROW, TINY_TRAIN


@pytest.mark.slow
def test_train_rows_every_method_toy(bench):
    rows = {r["row"]: r for r in bench(TINY_TRAIN)["results"]}
    assert set(rows) == set(ROWS)
    assert rows["psp"]["n_iters"] == 1 and rows["input_latent"]["n_iters"] == 2
    assert all(r["images_per_s"] > 0 and r["batch"] == 2 for r in rows.values())
    # the IFBlock rows add the identity encoder and IFM layers to the ReStyle baseline
    assert rows["ifblock"]["trainable_params_m"] > rows["baseline"]["trainable_params_m"]


def test_train_bf16_row(bench):
    (row,) = bench(BF16_PSP_ROW)["results"]
    assert row["precision"] == "bf16" and row["images_per_s"] > 0


def test_train_benchmark_leaves_no_accelerator_state(bench):
    """A bf16 benchmark row must not pin the mixed precision of later Accelerators in the process."""
    from accelerate import Accelerator

    bench(BF16_PSP_ROW)
    assert Accelerator(cpu=True).mixed_precision == "no"


def test_train_compare_times_the_reference_step_alongside(bench):
    (row,) = bench([*TINY_TRAIN, "--rows", "baseline", "--compare"])["results"]
    assert row["reference"] == REFERENCE_STEP
    assert row["reference_seconds_per_step"] > 0 and row["seconds_per_step"] > 0
    assert row["speedup"] == pytest.approx(row["reference_seconds_per_step"] / row["seconds_per_step"], rel=0.01)


def test_train_compare_takes_the_reference_overrides_given(bench):
    (row,) = bench([*TINY_TRAIN, "--rows", "baseline", "--compare", "train.step_constants=false"])["results"]
    assert row["reference"] == ["train.step_constants=false"] and row["reference_seconds_per_step"] > 0
