"""build_model: each Table 2 preset (ablations/*.yaml) and modified pSp builds exactly its modules."""

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from experiments.config import load_config
from models import encoders, ide, irse
from models.build import ModelConfig, build_model
from models.stylegan2 import Generator
from tests.models.test_inversion import toy_generator
from tests.models.test_irse import TOY

TOY_MODEL = dict(
    stage_channels=list(TOY["stage_channels"]),
    stage_units=list(TOY["stage_units"]),
    ifm_hidden=16,
    loss_resolution=64,
    n_iters=2,
    encoder_init="random",
)
EXPECTED = {  # top-level encoder modules per preset: the intended ones and nothing else
    "baseline": (encoders.BackboneEncoder, {"input_layer", "body", "styles"}),
    "ifblock": (ide.IDEEncoder, {"input_layer", "body", "styles", "identity", "ifms"}),
    "input_latent": (ide.IDEEncoder, {"input_layer", "body", "styles", "identity", "ifms", "latent_head"}),
    "pretrained_id": (ide.IDEEncoder, {"input_layer", "body", "styles", "identity", "ifms", "latent_head"}),
}


@pytest.fixture(scope="module")
def gen():
    return toy_generator()


@pytest.fixture(scope="module")
def toy_irse_file(tmp_path_factory):
    """A toy ArcFace IR-SE checkpoint (TreB1eN layout, fp16 like the shipped ones) to initialise from."""
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("weights") / "toy_arcface.safetensors"
    state = irse.Backbone(64, **TOY).state_dict()
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, str(path))
    return path


# the model section at the paper's size: ModelConfig's default stages (None), 128-wide IFMs, 256-px losses
FULL_SIZE = dict(stage_channels=None, stage_units=None, ifm_hidden=128, loss_resolution=256, identity_init="random")


def toy_cfg(preset=None, **over):
    """The model section of ``ablation=<preset>`` (composed with the presets it builds on), at toy size."""
    cfg = OmegaConf.structured(ModelConfig)
    if preset:
        cfg = OmegaConf.merge(cfg, load_config([f"ablation={preset}"]).model)
    return OmegaConf.merge(cfg, TOY_MODEL, over)


def matches_file(module, path):
    state = irse.body_state(irse.load_checkpoint(path))
    own = module.state_dict()
    return all(torch.equal(own[k], v.to(own[k].dtype)) for k, v in state.items())


@pytest.mark.parametrize("preset", list(EXPECTED))
def test_ablation_presets(preset, gen, toy_irse_file):
    model = build_model(toy_cfg(preset, identity_weights=str(toy_irse_file)), gen, 3, input_size=64)
    cls, children = EXPECTED[preset]
    enc = model.encoder
    assert type(enc) is cls and {name for name, _ in enc.named_children()} == children
    assert enc.input_layer[0].in_channels == (9 if preset == "baseline" else 6)
    assert model.kind == ("restyle" if preset == "baseline" else "ide") and model.n_iters == 2
    assert model.uses_input_latent == (preset in ("input_latent", "pretrained_id"))
    if cls is ide.IDEEncoder:
        assert matches_file(enc.identity, toy_irse_file) == (preset == "pretrained_id")
        assert len(enc.ifms) == 6 and enc.ifms["0"].gamma[0].out_channels == 16
    counts = sum(p.numel() for p in enc.parameters())
    print(f"toy {preset}: encoder {counts / 1e6:.2f} M parameters")
    model.train()
    contour, identity = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1
    for step in model.iterate(contour, identity):
        step.image_loss_res.square().mean().backward()
    assert step.index == 1 and step.image_loss_res.shape == (1, 3, 64, 64)
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


def test_psp_and_encoder_init(gen, toy_irse_file):
    cfg = toy_cfg(
        kind="psp",
        n_iters=1,
        identity_encoder=False,
        input_latent=False,
        encoder_init="pretrained",
        identity_weights=str(toy_irse_file),
    )
    model = build_model(cfg, gen, 19, input_size=64)
    enc = model.encoder
    assert type(enc) is encoders.GradualStyleEncoder and enc.input_layer[0].in_channels == 22
    children = {name for name, _ in enc.named_children()}
    assert children == {"input_layer", "body", "styles", "latlayer1", "latlayer2"}
    state = irse.load_checkpoint(toy_irse_file)
    assert enc.input_layer[0].weight.dtype == torch.float32
    assert torch.equal(enc.input_layer[0].weight[:, :3], state["input_layer.0.weight"].float())
    assert torch.equal(enc.state_dict()["body.5.res_layer.3.weight"], state["body.5.res_layer.3.weight"].float())
    (step,) = model.eval()(torch.zeros(1, 19, 64, 64), torch.zeros(1, 3, 64, 64))
    assert step.w.shape == (1, 10, 128)


def test_config_forms_and_options(gen):
    plain = dict(
        TOY_MODEL, kind="ide", identity_init="random", input_latent=False, identity_freeze=True, n_ifm_per_block=1
    )
    for cfg in (plain, ModelConfig(**plain), OmegaConf.create(plain)):
        model = build_model(cfg, gen, 1, input_size=64)
        assert model.encoder.identity_frozen and model.encoder.latent_head is None
        assert sorted(model.encoder.ifms, key=int) == ["0", "1", "3", "5"]
        assert model.encoder.input_layer[0].in_channels == 4


@pytest.mark.parametrize(
    "over,match",
    [
        (dict(kind="pulse"), "not an encoder"),
        (dict(kind="restyle", identity_encoder=False), "input_latent=false"),
        (dict(kind="psp", identity_encoder=False, input_latent=False), "n_iters=1"),
        (dict(kind="ide", identity_encoder=False), "identity_encoder=true"),
        (dict(kind="ide", identity_init="imagenet"), "random | pretrained"),
    ],
)
def test_inconsistent_configs_raise(gen, over, match):
    with pytest.raises(ValueError, match=match):
        build_model(toy_cfg(**over), gen, 3, input_size=64)


def test_full_size_presets_on_meta():
    """Table 2 at full size (1024 generator, 256 input) on the meta device: modules and parameter counts."""
    with torch.device("meta"):
        g = Generator(1024)
        for preset in EXPECTED:
            cfg = toy_cfg(preset, **FULL_SIZE, n_iters=5)
            model = build_model(cfg, g, 3, latent_avg=torch.zeros(512))
            enc = model.encoder
            assert enc.styles[0].convs[-2].in_channels == 512 and len(enc.styles) == 18
            assert len(enc.styles[0].convs) == 8  # 16x16 last map at 256 input
            if preset in ("input_latent", "pretrained_id"):
                assert enc.latent_head.convs[-1].out_channels == 512
            print(f"full {preset}: encoder {sum(p.numel() for p in enc.parameters()) / 1e6:.1f} M parameters")


@pytest.mark.slow
def test_full_size_forward_backward_cpu():
    """Ours at full size: 1024 generator, 256 input, LR contour, one step, forward + backward."""
    torch.manual_seed(0)
    g = Generator(1024)
    cfg = toy_cfg("pretrained_id", **FULL_SIZE, n_iters=1)
    model = build_model(cfg, g, 3).train()
    (step,) = model(torch.zeros(1, 3, 256, 256), torch.zeros(1, 3, 256, 256))
    assert step.image.shape == (1, 3, 1024, 1024) and step.image_loss_res.shape == (1, 3, 256, 256)
    assert step.w.shape == (1, 18, 512) and step.input_latent.shape == (1, 512, 4, 4)
    step.image_loss_res.mean().backward()
    assert model.encoder.styles[17].linear.weight.grad is not None
    assert all(p.grad is None for p in g.parameters())
