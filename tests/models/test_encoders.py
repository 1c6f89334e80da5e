"""ReStyle BackboneEncoder and pSp GradualStyleEncoder: official key layout, strict loads, shapes, init."""

import pytest
import torch

from models import encoders, irse
from tests.models.test_irse import TOY, random_state, treb1en_layout

IRSE50_UNITS = (3, 4, 14, 3)


def body_layout(input_nc, units=IRSE50_UNITS, channels=(64, 128, 256, 512)):
    full = treb1en_layout(units, channels, in_ch=input_nc)
    return {k: v for k, v in full.items() if not k.startswith("output_layer")}


def head_layout(i, in_c, out_c, n_convs):
    keys = {}
    for j in range(n_convs):
        keys[f"styles.{i}.convs.{2 * j}.weight"] = (out_c, in_c if j == 0 else out_c, 3, 3)
        keys[f"styles.{i}.convs.{2 * j}.bias"] = (out_c,)
    keys.update({f"styles.{i}.linear.weight": (out_c, out_c), f"styles.{i}.linear.bias": (out_c,)})
    return keys


def restyle_layout(input_nc=6, n_styles=18):
    """ReStyle's BackboneEncoder at 256 input: every head on the 16x16 map (4 convs)."""
    keys = body_layout(input_nc)
    for i in range(n_styles):
        keys.update(head_layout(i, 512, 512, 4))
    return keys


def psp_layout(input_nc=3, n_styles=18):
    """pSp's GradualStyleEncoder at 256 input: heads 0-2 on 16x16 (4 convs), 3-6 on 32 (5), 7+ on 64 (6)."""
    keys = body_layout(input_nc)
    for i in range(n_styles):
        keys.update(head_layout(i, 512, 512, 4 if i < 3 else 5 if i < 7 else 6))
    keys.update(
        {
            "latlayer1.weight": (512, 256, 1, 1),
            "latlayer1.bias": (512,),
            "latlayer2.weight": (512, 128, 1, 1),
            "latlayer2.bias": (512,),
        }
    )
    return keys


def shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def official_checkpoint(layout, device="meta"):
    """pSp/ReStyle checkpoint format: encoder.* + decoder.* tensors, opts, latent_avg."""
    if device == "meta":
        enc = {f"encoder.{k}": torch.empty(s, device="meta") for k, s in layout.items()}
    else:
        enc = {f"encoder.{k}": v for k, v in random_state(layout).items()}
    state = {**enc, "decoder.input.input": torch.zeros(1, 4, 4, 4, device=device)}
    return {
        "state_dict": state,
        "opts": {"input_nc": 6, "n_iters_per_batch": 5},
        "latent_avg": torch.ones(18, 512, device=device),
    }


@pytest.mark.parametrize("kind", ["restyle", "psp"])
def test_official_layout_full_size_loads_strictly(kind):
    """Full-size encoders on the meta device: keys/shapes equal the official ones, strict load passes."""
    with torch.device("meta"):
        if kind == "restyle":
            model, layout = encoders.BackboneEncoder(50, "ir_se", input_nc=6, n_styles=18), restyle_layout()
        else:
            model, layout = encoders.GradualStyleEncoder(50, "ir_se", input_nc=3, n_styles=18), psp_layout()
    assert shapes(model) == layout
    assert model(torch.empty(1, 6 if kind == "restyle" else 3, 256, 256, device="meta")).shape == (1, 18, 512)
    latent_avg = encoders.load_official_encoder(model, official_checkpoint(layout))
    assert latent_avg.shape == (18, 512)
    n = sum(p.numel() for p in model.parameters())
    n_heads = sum(p.numel() for p in model.styles.parameters())
    print(f"{kind} encoder (IR-SE50, 18 styles): {n / 1e6:.1f} M parameters, heads {n_heads / 1e6:.1f} M")
    if kind == "restyle":
        assert 174e6 < n_heads < 176e6  # "about 175 M params in the 18 heads alone"


def test_official_checkpoint_file_strict_toy(tmp_path):
    model = encoders.BackboneEncoder(input_nc=6, n_styles=10, style_dim=128, input_size=64, **TOY)
    layout = shapes(model)
    ckpt = official_checkpoint(layout, device="cpu")
    torch.save(ckpt, tmp_path / "restyle.pt")
    assert torch.equal(encoders.load_official_encoder(model, tmp_path / "restyle.pt"), ckpt["latent_avg"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][f"encoder.{k}"]), k
    ckpt["state_dict"].pop("encoder.styles.3.linear.bias")
    with pytest.raises(RuntimeError, match="Missing key"):
        encoders.load_official_encoder(model, ckpt)


@pytest.mark.parametrize("cls,input_nc", [(encoders.BackboneEncoder, 22), (encoders.GradualStyleEncoder, 4)])
def test_toy_shapes_and_gradients(cls, input_nc):
    model = cls(input_nc=input_nc, n_styles=10, style_dim=128, input_size=64, **TOY).eval()
    assert len(model.styles[0].convs) == 2 * 2  # 4x4 last map -> 2 stride-2 convs
    x = torch.randn(2, input_nc, 64, 64, requires_grad=True)
    w = model(x)
    assert w.shape == (2, 10, 128)
    w[0].square().sum().backward()
    assert x.grad[0].abs().sum() > 0 and x.grad[1].abs().sum() == 0  # samples stay independent (eval BN)
    print(f"toy {cls.__name__}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")


def test_psp_pyramid_uses_all_taps():
    """Style i reads c3, p2 or p1: perturbing latlayer2 (the stage-2 tap) changes only styles >= 7."""
    torch.manual_seed(0)
    model = encoders.GradualStyleEncoder(input_nc=3, n_styles=10, style_dim=128, input_size=64, **TOY).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        model.latlayer2.bias.add_(1.0)
        after = model(x)
    changed = (before - after).abs().amax(dim=2)[0] > 1e-6
    assert changed.tolist() == [False] * 7 + [True] * 3


def test_init_from_irse_extra_channels():
    torch.manual_seed(0)
    state = random_state(treb1en_layout(TOY["stage_units"], TOY["stage_channels"]))
    model = encoders.BackboneEncoder(input_nc=22, n_styles=10, style_dim=128, input_size=64, **TOY)
    heads = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("styles.")}
    encoders.init_from_irse(model, state)
    got = model.state_dict()
    w = got["input_layer.0.weight"]
    assert torch.equal(w[:, :3], state["input_layer.0.weight"])
    assert w[:, 3:].std() > 0.5  # ReStyle's N(0, 1) for the extra channels
    for k, v in irse.body_state(state).items():
        if k != "input_layer.0.weight":
            assert torch.equal(got[k], v), k
    for k, v in heads.items():
        assert torch.equal(got[k], v), k


def test_init_from_irse_rejects_mismatched_body():
    state = random_state(treb1en_layout(TOY["stage_units"], TOY["stage_channels"]))
    model = encoders.BackboneEncoder(
        input_nc=6,
        n_styles=10,
        style_dim=128,
        input_size=64,
        stage_channels=TOY["stage_channels"],
        stage_units=(1, 2, 3, 1),
    )
    with pytest.raises(ValueError, match="do not fit"):
        encoders.init_from_irse(model, state)
    narrow = encoders.BackboneEncoder(
        input_nc=6,
        n_styles=10,
        style_dim=128,
        input_size=64,
        stage_channels=(16, 64, 96, 128),
        stage_units=TOY["stage_units"],
    )
    with pytest.raises(ValueError, match="do not fit.*input layer"):
        encoders.init_from_irse(narrow, state)


def test_gradual_style_block_needs_power_of_two():
    assert len(encoders.GradualStyleBlock(8, 16, 16).convs) == 8
    with pytest.raises(ValueError):
        encoders.GradualStyleBlock(8, 16, 12)
