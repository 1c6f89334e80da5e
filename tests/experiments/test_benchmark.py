"""Benchmark subcommands run end to end on tiny settings and report complete rows (no timing asserted)."""

import json

import pytest

from experiments import benchmark

# the smallest fp32 training rows on the toy world (every row unless --rows), and one bf16 row
TINY_TRAIN = "train --worlds toy --precisions fp32 --batch 2 --n-iters 2 --iters 1 --warmup 0".split()
BF16_PSP_ROW = "train --worlds toy --rows psp --precisions bf16 --batch 1 --iters 1 --warmup 0".split()


def run(argv, capsys):
    result = benchmark.run(argv)
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(result))  # the JSON document on stdout is the result
    for row in result["results"]:
        assert "error" not in row, row
    return result


def test_generator_rows(capsys):
    result = run(
        [
            "generator",
            "--sizes",
            "64",
            "--batches",
            "1",
            "2",
            "--precisions",
            "fp32",
            "--modes",
            "fwd",
            "fwd+bwd",
            "--iters",
            "1",
            "--warmup",
            "0",
        ],
        capsys,
    )
    assert [(r["batch"], r["mode"]) for r in result["results"]] == [
        (1, "fwd"),
        (1, "fwd+bwd"),
        (2, "fwd"),
        (2, "fwd+bwd"),
    ]
    assert all(r["images_per_s"] > 0 for r in result["results"])


@pytest.mark.slow
def test_train_rows_every_method_toy(capsys):
    result = run(TINY_TRAIN, capsys)
    rows = {r["row"]: r for r in result["results"]}
    assert set(rows) == set(benchmark.ROWS)
    assert rows["psp"]["n_iters"] == 1 and rows["input_latent"]["n_iters"] == 2
    assert all(r["images_per_s"] > 0 and r["batch"] == 2 for r in rows.values())
    # the IFBlock rows add the identity encoder and IFM layers to the ReStyle baseline
    assert rows["ifblock"]["trainable_params_m"] > rows["baseline"]["trainable_params_m"]


def test_train_bf16_row(capsys):
    result = run(BF16_PSP_ROW, capsys)
    (row,) = result["results"]
    assert row["precision"] == "bf16" and row["images_per_s"] > 0


def test_pulse_vs_encoder_toy(capsys):
    result = run(
        [
            "pulse-vs-encoder",
            "--worlds",
            "toy",
            "--batches",
            "2",
            "--n-iters",
            "2",
            "--pulse-steps",
            "2",
            "--gaussian-fit-samples",
            "1000",
            "--warmup",
            "0",
        ],
        capsys,
    )
    (row,) = result["results"]
    assert row["pulse_steps_run"] == 2 and row["pulse_steps"] > 2  # the config's steps, scaled linearly
    assert row["pulse_over_encoder"] == pytest.approx(row["pulse_s_per_image"] / row["encoder_s_per_image"], rel=0.05)


def test_random_weight_world_networks():
    """The paper's world without its files: config-f generator, IR-SE50 and AlexNet LPIPS, random weights."""
    import torch

    cfg = benchmark.world_config("256", ["ablation=pretrained_id"])
    assert cfg.model.identity_init == "random" and cfg.generator.size == 256
    generator, latent_avg, arcface, perceptual = benchmark.frozen_networks(cfg, torch.device("cpu"))
    assert generator.n_latent == 14 and latent_avg.shape == (512,)
    assert sum(p.numel() for p in arcface.parameters()) > 40e6  # IR-SE50's size, not a toy one
    assert not any(p.requires_grad for p in generator.parameters())
    batch = benchmark.synthetic_batch(cfg, 2, torch.device("cpu"))
    assert batch["contour"].shape == (2, 3, 256, 256) and batch["target"].shape == (2, 3, 256, 256)
    assert perceptual(batch["identity"], batch["identity"]).abs().max() < 1e-6


def test_train_benchmark_leaves_no_accelerator_state(capsys):
    """A bf16 benchmark row must not pin the mixed precision of later Accelerators in the process."""
    from accelerate import Accelerator

    run(BF16_PSP_ROW, capsys)
    assert Accelerator(cpu=True).mixed_precision == "no"


def test_bad_device_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.run(["generator", "--device", "gpu0"])
    assert exit_info.value.code == 2
    assert "--device gpu0: not a torch device" in capsys.readouterr().err


def test_demo_rows(capsys):
    pytest.importorskip("gradio", reason="the demo benchmark needs gradio: pip install -e '.[demo]'")
    result = run(["demo", "--iters", "1", "--warmup", "0"], capsys)
    assert [r["row"] for r in result["results"]] == ["pipeline", "click", "round_trip"]
    assert all(r["seconds"] > 0 and r["cpu_seconds"] > 0 and r["faces"] == 4 for r in result["results"])


def test_train_compare_times_the_reference_step_alongside(capsys):
    result = run([*TINY_TRAIN, "--rows", "baseline", "--compare"], capsys)
    (row,) = result["results"]
    assert row["reference_seconds_per_step"] > 0 and row["seconds_per_step"] > 0
    assert row["speedup"] == pytest.approx(row["reference_seconds_per_step"] / row["seconds_per_step"], rel=0.01)


def test_profile_attributes_the_step_to_modules_and_ops(capsys):
    result = benchmark.run(
        ["profile", "--row", "input_latent", "--batch", "2", "--set", "model.n_iters=2", "--top", "5"]
    )
    capsys.readouterr()
    fwd, bwd = result["forward_ms_by_module"], result["backward_ms_by_module"]
    for part in ("generator", "encoder.body", "encoder.identity", "encoder.ifms", "loss.perceptual", "loss.identity"):
        assert fwd[part] > 0, part
    for part in ("generator", "encoder.body", "loss.perceptual"):  # backprop reaches them all
        assert bwd[part] > 0, part
    assert len(result["forward_ms_by_op"]) == 5 and "ConvolutionBackward0" in result["backward_ms_by_node"]
    assert result["profiled_forward_ms"] == pytest.approx(sum(fwd.values()), abs=1)
    assert result["gflop_per_step"] > 0 and 0 < result["fraction_of_peak"]
    assert result["achieved_gflop_s"] == pytest.approx(result["gflop_per_step"] / result["seconds_per_step"], rel=0.02)


def test_step_flops_count_grouped_conv_weight_gradients_right():
    """A grouped conv's weight gradient costs its forward: torch's own formula would count groups x that."""
    import torch
    import torch.nn.functional as F

    x = torch.randn(1, 8 * 4, 6, 6, requires_grad=True)
    w = torch.randn(8 * 5, 4, 3, 3, requires_grad=True)
    forward = 2 * (8 * 5) * 4 * 9 * 36  # multiply-adds of the forward, x2

    def fwd_bwd():
        F.conv2d(x, w, padding=1, groups=8).sum().backward()

    assert benchmark.step_flops(fwd_bwd) == 3 * forward  # forward, input gradient, weight gradient


@pytest.mark.slow
def test_inference_and_trees_against_a_checkout(capsys):
    result = run(["inference", "--pairs", "4", "--batch", "2", "--iters", "1", "--warmup", "0"], capsys)
    assert [r["loop"] for r in result["results"]] == ["pipeline", "evaluation"]
    assert all(r["images_per_s"] > 0 for r in result["results"]) and result["pairs"] == 4
    # this checkout as its own reference: the runner, the environment switch and the medians
    trees = benchmark.run(
        [
            "trees",
            "--reference",
            str(benchmark.REPO_ROOT),
            "--rounds",
            "1",
            "--",
            "inference",
            "--pairs",
            "2",
            "--batch",
            "2",
            "--iters",
            "1",
            "--warmup",
            "0",
        ]
    )
    capsys.readouterr()
    assert len(trees["per_round"]["reference"]) == 1 and len(trees["speedup_this_over_reference"]) == 2
    assert all(s > 0 for s in trees["speedup_this_over_reference"])
