"""Training steps of every encoder method (Table 2 rows and modified pSp) at toy size."""

import json

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import save_file

from experiments.config import load_config
from experiments.config_schema import ConfigError
from experiments.methods import build_method, build_pulse
from models.build import EVAL_ONLY
from models.irse import Backbone
from models.stylegan2 import Generator, save_generator

from .conftest import tiny_overrides

ROWS = ["ablation=baseline", "ablation=ifblock", "ablation=input_latent", "ablation=pretrained_id", "method=psp"]


def row_tokens(row, nets, out, **extra):
    """The tiny world runs 2 refinement steps; pSp is single-pass by definition."""
    if row == "method=psp":
        extra["model.n_iters"] = 1
    return [row, *tiny_overrides(nets, out, **extra)]


def collate(items):
    return {
        k: torch.stack([it[k] for it in items]) if isinstance(items[0][k], torch.Tensor) else [it[k] for it in items]
        for k in items[0]
    }


@pytest.mark.parametrize("row", ROWS)
def test_one_step_changes_encoder_only(row, tiny_nets, tmp_path):
    cfg = load_config(row_tokens(row, tiny_nets, tmp_path))
    method = build_method(cfg, torch.device("cpu"))
    accelerator = Accelerator(cpu=True)
    trainable = [p for p in method.trainable.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-3)
    frozen = {
        "generator": method.model.decoder,
        "arcface": method.objective.identity.embedder,
        "perceptual": method.objective.perceptual,
    }
    before = {name: [p.detach().clone() for p in net.parameters()] for name, net in frozen.items()}
    encoder_before = [p.detach().clone() for p in trainable]
    logs = method.train_step(collate([method.world.train_set[i] for i in range(2)]), accelerator)
    optimizer.step()
    expected_steps = cfg.model.n_iters
    assert {f"step{t + 1}/{k}" for t in range(expected_steps) for k in ("l2", "lpips", "id", "wnorm")} <= set(logs)
    assert any(not torch.equal(a, p) for a, p in zip(encoder_before, trainable))
    for name, net in frozen.items():
        assert all(not p.requires_grad and p.grad is None for p in net.parameters()), name
        assert all(torch.equal(a, p) for a, p in zip(before[name], net.parameters())), name


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS)
def test_short_run_reduces_training_loss(row, tiny_nets, tmp_path):
    from experiments.train import train

    steps = 60
    cfg = load_config(
        row_tokens(
            row,
            tiny_nets,
            tmp_path,
            **{
                "train.max_steps": steps,
                "train.lr": 1e-3,
                "train.val_every": steps,
                "train.ckpt_every": steps,
                "wandb.mode": "disabled",
            },
        )
    )
    run_dir = train(cfg)
    losses = [
        m["train/loss"]
        for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        if "train/loss" in m
    ]
    assert len(losses) == steps
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first, (first, last)


def _three_steps(row, nets, out, tokens):
    """Weights (parameters and buffers) and logs after 3 SGD steps of 3 refinement steps each (SGD, as Adam
    would turn rounding-level differences of near-zero gradients into lr-sized steps; lr 1e-3, as at 1e-2 the
    tiny pretrained-ID run diverges on the toy world's per-photo looks, L2 1.2 -> 19.9 in 3 steps, and
    amplifies summation-order rounding past any fixed tolerance)."""
    cfg = load_config(row_tokens(row, nets, out) + list(tokens))
    if row != "method=psp":
        cfg.model.n_iters = 3
    torch.manual_seed(0)
    method = build_method(cfg, torch.device("cpu"))
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.SGD([p for p in method.trainable.parameters() if p.requires_grad], lr=1e-3)
    method.trainable.train()
    logs = []
    for k in range(3):
        logs.append(
            method.train_step(collate([method.world.train_set[i] for i in range(2 * k, 2 * k + 2)]), accelerator)
        )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return {**dict(method.model.encoder.named_parameters()), **dict(method.model.encoder.named_buffers())}, logs


# Hoisting the loss targets changes no arithmetic: the rows without an identity encoder train bitwise
# alike. The shared identity condition (E_id's features, the IFMs' modulations) and the generator's factored
# backward change summation orders only: the same first losses, then agreement to rounding
# (experiments.benchmarks.worlds.REFERENCE_STEP is the step before all three).
@pytest.mark.parametrize(
    "row, tokens, exact",
    [
        ("ablation=baseline", [], True),
        ("method=psp", [], True),
        ("ablation=pretrained_id", ["model.identity_freeze=true"], False),
        ("ablation=input_latent", [], False),
        ("ablation=input_latent", ["generator.factored_backward=false"], False),
        ("ablation=baseline", [], False),
    ],
)
def test_current_step_trains_as_the_reference_step(row, tokens, exact, tiny_nets, tmp_path):
    from experiments.benchmarks.worlds import REFERENCE_STEP

    new_state, new_logs = _three_steps(row, tiny_nets, tmp_path, tokens)
    reference = ["train.step_constants=false"] if exact else REFERENCE_STEP
    old_state, old_logs = _three_steps(row, tiny_nets, tmp_path, [*tokens, *reference])
    assert new_state.keys() == old_state.keys()
    if exact:
        assert new_logs == old_logs
        assert all(torch.equal(new_state[k], old_state[k]) for k in new_state)
        return
    assert new_logs[0] == old_logs[0]  # the first batch's forwards are the same computation
    for new, old in zip(new_logs, old_logs):
        assert new == pytest.approx(old, rel=1e-4, abs=1e-6)
    for k in new_state:  # parameters, and E_id's BatchNorm statistics (one update of momentum 1 - 0.9^3)
        torch.testing.assert_close(new_state[k], old_state[k], rtol=1e-4, atol=1e-5, msg=k)


def _pulse(tmp_path, *tokens):
    """(config, build_pulse) on files given by path: random weights in the toy world's shapes."""
    cfg = load_config(
        [
            "method=pulse",
            f"generator.weights={tmp_path / 'g.safetensors'}",
            f"loss.id_network={tmp_path / 'arc.safetensors'}",
            "pulse.steps=2",
            "pulse.gaussian_fit_samples=2048",
            "pulse.w_id=0.5",
            *tokens,
        ]
    )
    if not (tmp_path / "g.safetensors").exists():
        torch.manual_seed(0)
        gc = cfg.generator
        g = Generator(gc.size, gc.style_dim, gc.n_mlp, channels={int(k): v for k, v in gc.channels.items()})
        save_generator(tmp_path / "g.safetensors", g, torch.zeros(gc.style_dim))
        arc = Backbone(input_size=32, stage_channels=(8, 16, 24, 32), stage_units=(1, 1, 1, 1))
        save_file({k: v.contiguous() for k, v in arc.state_dict().items()}, str(tmp_path / "arc.safetensors"))
    return cfg, build_pulse(cfg, torch.device("cpu"))


def _lr_contours(cfg):
    """Two LR contours, upsampled to the encoder input size as the data pipeline gives them."""
    return (
        torch.rand(2, 3, cfg.data.input_size, cfg.data.input_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    )


def test_build_pulse_wires_the_config(tmp_path):
    """build_pulse on files given by path (random weights in the toy world's shapes): sizes, knobs, cache."""
    cfg, pulse = _pulse(tmp_path)
    c, gc = pulse.config, cfg.generator
    assert (c.steps, c.w_id, c.seed, pulse.lr_size) == (2, 0.5, 0, cfg.data.lr_size)
    assert pulse.identity_loss.crop == tuple(cfg.loss.id_crop)
    assert len(list(tmp_path.glob("gaussian_fit-*.safetensors"))) == 1
    contour = _lr_contours(cfg)
    out = pulse(contour, contour)
    assert out.image.shape == (2, 3, gc.size, gc.size) and out.eps_reached.dtype == torch.bool
    assert out.eps_reached.shape == (2,) and out.id_loss.shape == (2,)


@pytest.mark.slow
def test_compiled_pulse_finds_what_the_eager_pulse_finds(tmp_path):
    """``pulse.compile`` compiles the generator and the identity ArcFace: the same search to rounding."""
    from torch._dynamo.utils import counters

    cfg, eager = _pulse(tmp_path)
    torch._dynamo.reset()
    counters.clear()
    _, compiled = _pulse(tmp_path, "pulse.compile=true")
    contour = _lr_contours(cfg)
    expected, got = eager(contour, contour), compiled(contour, contour)
    assert counters["stats"]["unique_graphs"] >= 2  # the generator and the ArcFace
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.image, expected.image, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", EVAL_ONLY)
def test_methods_with_nothing_to_train_are_refused_with_the_command_that_evaluates_them(name):
    with pytest.raises(ConfigError, match=f"experiments/evaluate.py method={name}"):
        build_method(load_config([f"method={name}"]), torch.device("cpu"))


@pytest.mark.slow
def test_compiled_step_trains_as_the_eager_step(tiny_nets, tmp_path):
    """``train.compile`` changes how the networks run, not what they compute: inductor's fused kernels round
    differently, so the 3 steps agree to rounding, and the compiled networks keep their state-dict keys."""
    from torch._dynamo.utils import counters

    row = "ablation=pretrained_id"  # every network: E_id, the IFMs, the input latent, both loss networks
    torch._dynamo.reset()
    counters.clear()
    compiled_state, compiled_logs = _three_steps(row, tiny_nets, tmp_path, ["train.compile=true"])
    assert counters["stats"]["unique_graphs"] >= 4  # the encoder, the generator and both loss networks
    eager_state, eager_logs = _three_steps(row, tiny_nets, tmp_path, [])
    assert compiled_state.keys() == eager_state.keys()
    assert not any("_orig_mod" in k for k in compiled_state)
    for compiled, eager in zip(compiled_logs, eager_logs):
        assert compiled == pytest.approx(eager, rel=1e-4, abs=1e-6)
    for k in compiled_state:
        torch.testing.assert_close(compiled_state[k], eager_state[k], rtol=1e-4, atol=1e-5, msg=k)


def test_compiling_on_a_cpu_without_a_compiler_says_so_in_one_line(tmp_path, monkeypatch):
    from torch._inductor import config as inductor_config
    from torch._inductor.cpp_builder import cpp_compiler_search

    monkeypatch.setattr(inductor_config.cpp, "cxx", (None, str(tmp_path / "no-such-c++")))
    cpp_compiler_search.cache_clear()
    try:
        with pytest.raises(ConfigError, match="needs the C[+][+] compiler .* set the knob to false") as err:
            _pulse(tmp_path, "pulse.compile=true")
    finally:
        cpp_compiler_search.cache_clear()  # the next test finds the real compiler again
    assert "\n" not in str(err.value)
