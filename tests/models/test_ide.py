"""IDE dual encoder: IFM identity at init, eq. (1)-(2), spatial locality, heads, freezing, layouts."""

import pytest
import torch
from torch import nn

from models import encoders, ide
from tests.models.test_encoders import body_layout, shapes
from tests.models.test_irse import TOY

TOY_IDE = dict(n_styles=10, style_dim=128, input_size=64, **TOY)


def randomize_fcns(model, seed=0):
    """Give every IFM's zero-initialised last convs random weights (a trained-like IFM)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ide.IFM):
                for fcn in (m.gamma, m.beta):
                    fcn[-1].weight.copy_(torch.randn(fcn[-1].weight.shape, generator=g) * 0.05)
                    fcn[-1].bias.copy_(torch.randn(fcn[-1].bias.shape, generator=g) * 0.05)


def test_fresh_ifm_is_identity():
    ifm = ide.IFM(16, 24, hidden=8)
    h, f = torch.randn(2, 16, 8, 8), torch.randn(2, 24, 8, 8)
    assert torch.equal(ifm(h, f), h)


def test_ifm_is_eq_1_2_with_full_tensors():
    torch.manual_seed(0)
    ifm = ide.IFM(16, 24, hidden=8)
    randomize_fcns(ifm)
    h, f = torch.randn(2, 16, 8, 8), torch.randn(2, 24, 8, 8)
    gamma = 1 + ifm.gamma(f)
    beta = ifm.beta(f)
    assert gamma.shape == beta.shape == h.shape
    assert gamma.std(dim=(2, 3)).min() > 0 and gamma.std(dim=1).min() > 0  # varies over sites and channels
    torch.testing.assert_close(ifm(h, f), gamma * h + beta)
    with pytest.raises(ValueError, match="aligned"):
        ifm(h, torch.randn(2, 24, 4, 4))


def test_ifm_is_spatially_local():
    """Perturb F_id at one site: only sites within the FCN's receptive field (two 3x3 convs: radius 2) of
    the modulated map change."""
    torch.manual_seed(0)
    ifm = ide.IFM(8, 12, hidden=16)
    randomize_fcns(ifm)
    h, f = torch.randn(1, 8, 12, 12), torch.randn(1, 12, 12, 12)
    g = f.clone()
    g[0, :, 6, 3] += 3.0
    diff = (ifm(h, g) - ifm(h, f)).abs().amax(dim=1)[0]
    expected = torch.zeros(12, 12, dtype=torch.bool)
    expected[4:9, 1:6] = True
    assert torch.equal(diff > 1e-7, expected)


def test_fresh_ide_equals_plain_trunk():
    """Zero-initialised FCNs: IDE's main encoder equals the plain IR-SE bottleneck stack with its weights,
    whatever the identity image."""
    torch.manual_seed(0)
    model = ide.IDEEncoder(contour_channels=19, latent_channels=128, **TOY_IDE).eval()
    plain = encoders.BackboneEncoder(input_nc=22, **TOY_IDE).eval()
    shared = {k: v for k, v in model.state_dict().items() if k in plain.state_dict()}
    plain.load_state_dict(shared, strict=True)
    x, ida, idb = torch.randn(2, 22, 64, 64), torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        wa, la = model(x, ida)
        wb, _ = model(x, idb)
        torch.testing.assert_close(wa, plain(x), rtol=0, atol=0)
    assert torch.equal(wa, wb)
    assert la.shape == (2, 128, 4, 4) and not la.any()  # input-latent head starts at zero


def test_ide_toy_shapes_identity_dependence_and_grads():
    torch.manual_seed(0)
    model = ide.IDEEncoder(contour_channels=3, latent_channels=128, **TOY_IDE)
    assert sorted(model.ifms, key=int) == [str(k) for k in range(6)]
    randomize_fcns(model)
    with torch.no_grad():
        model.latent_head.convs[-1].weight.normal_(0, 0.05)
    x, ida, idb = torch.randn(2, 6, 64, 64), torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    w, lat = model(x, ida)
    assert w.shape == (2, 10, 128) and lat.shape == (2, 128, 4, 4)
    assert not torch.allclose(model(x, idb)[0], w)
    (w.square().mean() + lat.square().mean()).backward()
    for name in (
        "identity.input_layer.0.weight",
        "ifms.0.gamma.0.weight",
        "input_layer.0.weight",
        "latent_head.convs.0.weight",
        "styles.9.linear.weight",
    ):
        assert model.get_parameter(name).grad.abs().sum() > 0, name
    n_id = sum(p.numel() for p in model.identity.parameters())
    n_ifm = sum(p.numel() for p in model.ifms.parameters())
    print(
        f"toy IDE encoder: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters "
        f"(identity {n_id / 1e6:.2f} M, IFMs {n_ifm / 1e6:.2f} M)"
    )


def test_no_latent_head_and_ifm_placement():
    model = ide.IDEEncoder(contour_channels=1, latent_channels=None, n_ifm_per_block=1, **TOY_IDE)
    assert model.latent_head is None
    assert sorted(model.ifms, key=int) == ["0", "1", "3", "5"]  # first unit of each stage (units 1, 2, 2, 1)
    w, lat = model(torch.randn(1, 4, 64, 64), torch.randn(1, 3, 64, 64))
    assert w.shape == (1, 10, 128) and lat is None
    with pytest.raises(ValueError):
        ide.IDEEncoder(n_ifm_per_block=0, **TOY_IDE)


def test_identity_channels_differ_from_main():
    torch.manual_seed(0)
    model = ide.IDEEncoder(
        contour_channels=3,
        latent_channels=None,
        identity_stage_channels=(16, 32, 48, 64),
        identity_stage_units=(1, 1, 1, 1),
        **TOY_IDE,
    )
    assert model.ifms["5"].gamma[0].in_channels == 64 and model.ifms["5"].gamma[-1].out_channels == 128
    randomize_fcns(model)
    w, _ = model(torch.randn(1, 6, 64, 64), torch.randn(1, 3, 64, 64))
    assert w.shape == (1, 10, 128)


def test_frozen_identity_encoder():
    torch.manual_seed(0)
    model = ide.IDEEncoder(contour_channels=3, latent_channels=None, identity_freeze=True, **TOY_IDE)
    randomize_fcns(model)
    model.train()
    assert not model.identity.training and model.body.training
    assert not any(p.requires_grad for p in model.identity.parameters())
    feats = model.identity_features(torch.randn(2, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4] and not any(f.requires_grad for f in feats)
    w, _ = model(torch.randn(2, 6, 64, 64), condition=model.identity_condition(feats))
    w.sum().backward()
    assert all(p.grad is None for p in model.identity.parameters())
    assert model.ifms["0"].gamma[0].weight.grad.abs().sum() > 0


def test_input_latent_head():
    head = ide.InputLatentHead(32, 16, 16)
    assert sum(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in head.modules()) == 2
    out = head(torch.randn(2, 32, 16, 16))
    assert out.shape == (2, 16, 4, 4) and not out.any()
    # a 64-px input (4x4 last map): no resampling, the layout the 64-px world's shipped head had
    assert [type(m).__name__ for m in ide.InputLatentHead(32, 16, 4).convs] == ["Conv2d", "LeakyReLU", "Conv2d"]
    for bad in (0, 3, 12):
        with pytest.raises(ValueError, match="power-of-2 map"):
            ide.InputLatentHead(32, 16, bad)


@pytest.mark.parametrize("spatial", [1, 2])
def test_input_latent_head_upsamples_a_small_map(spatial):
    """A 32-px (2x2 last map) or 16-px input still gives the 4x4 input latent, and its gradient reaches the map."""
    head = ide.InputLatentHead(8, 16, spatial)
    nn.init.normal_(head.convs[-1].weight)
    x = torch.randn(2, 8, spatial, spatial, requires_grad=True)
    out = head(x)
    assert out.shape == (2, 16, 4, 4)
    out.square().sum().backward()
    assert x.grad.abs().sum() > 0


def test_a_32_px_encoder_predicts_the_input_latent():
    model = ide.IDEEncoder(
        contour_channels=3,
        n_styles=8,
        style_dim=32,
        latent_channels=32,
        input_size=32,
        stage_channels=(8, 16, 16, 32),
        stage_units=(1, 1, 1, 1),
        ifm_hidden=8,
    )
    w, latent = model(torch.randn(2, 6, 32, 32), torch.randn(2, 3, 32, 32))
    assert w.shape == (2, 8, 32) and latent.shape == (2, 32, 4, 4)


def test_full_size_layout_and_parameter_count():
    with torch.device("meta"):
        model = ide.IDEEncoder(contour_channels=3, latent_channels=512, n_styles=18, style_dim=512)
    got = shapes(model)
    main = {k: v for k, v in got.items() if k.startswith(("input_layer.", "body."))}
    assert main == body_layout(6)
    identity = {k[len("identity.") :]: v for k, v in got.items() if k.startswith("identity.")}
    assert identity == body_layout(3)
    assert len(model.ifms) == 24 and len(model.styles) == 18
    w, lat = model(torch.empty(1, 6, 256, 256, device="meta"), torch.empty(1, 3, 256, 256, device="meta"))
    assert w.shape == (1, 18, 512) and lat.shape == (1, 512, 4, 4)
    assert got["ifms.23.gamma.0.weight"] == (128, 512, 3, 3)
    assert got["ifms.0.beta.2.weight"] == (64, 128, 3, 3)
    counts = {
        name: sum(p.numel() for p in getattr(model, name).parameters())
        for name in ("identity", "body", "ifms", "styles", "latent_head")
    }
    print(
        "full IDE encoder (M): "
        + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in counts.items())
        + f", total {sum(p.numel() for p in model.parameters()) / 1e6:.1f}"
    )


@pytest.mark.slow
def test_full_size_forward_cpu():
    torch.manual_seed(0)
    model = ide.IDEEncoder(contour_channels=19, latent_channels=512, n_styles=18, style_dim=512).eval()
    with torch.no_grad():
        w, lat = model(torch.randn(1, 22, 256, 256), torch.randn(1, 3, 256, 256))
    assert w.shape == (1, 18, 512) and lat.shape == (1, 512, 4, 4)
