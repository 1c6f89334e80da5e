"""IR-SE backbone: TreB1eN key layout (strict load), embedding, stage maps, toy configuration."""

import pytest
import torch
from safetensors.torch import save_file

from models import irse
from models.irse import Backbone, backbone_kwargs_from_state, load_arcface
from tests.losses.test_identity import small_arcface

TOY = dict(stage_channels=(32, 64, 96, 128), stage_units=(1, 2, 2, 1))


def bn(prefix, c, affine=True):
    keys = {f"{prefix}.running_mean": (c,), f"{prefix}.running_var": (c,)}
    keys[f"{prefix}.num_batches_tracked"] = ()
    if affine:
        keys.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,)})
    return keys


def treb1en_layout(units, channels=(64, 128, 256, 512), se=True, in_ch=3, last=7, emb=512):
    """Key -> shape of a TreB1eN ArcFace state dict, written out from the published layout."""
    c0 = channels[0]
    keys = {"input_layer.0.weight": (c0, in_ch, 3, 3), **bn("input_layer.1", c0)}
    keys["input_layer.2.weight"] = (c0,)
    k, in_c = 0, c0
    for depth, n in zip(channels, units):
        for _ in range(n):
            p = f"body.{k}"
            if in_c != depth:
                keys[f"{p}.shortcut_layer.0.weight"] = (depth, in_c, 1, 1)
                keys.update(bn(f"{p}.shortcut_layer.1", depth))
            keys.update(bn(f"{p}.res_layer.0", in_c))
            keys[f"{p}.res_layer.1.weight"] = (depth, in_c, 3, 3)
            keys[f"{p}.res_layer.2.weight"] = (depth,)
            keys[f"{p}.res_layer.3.weight"] = (depth, depth, 3, 3)
            keys.update(bn(f"{p}.res_layer.4", depth))
            if se:
                keys[f"{p}.res_layer.5.fc1.weight"] = (depth // 16, depth, 1, 1)
                keys[f"{p}.res_layer.5.fc2.weight"] = (depth, depth // 16, 1, 1)
            k, in_c = k + 1, depth
    keys.update(bn("output_layer.0", channels[3]))
    keys["output_layer.3.weight"] = (emb, channels[3] * last * last)
    keys["output_layer.3.bias"] = (emb,)
    keys.update(bn("output_layer.4", emb))
    return keys


def random_state(layout, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) > 1:  # conv / linear: fan-in scaled so activations keep their size
            state[key] = torch.randn(shape, generator=g) / torch.tensor(shape[1:]).prod().sqrt()
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1 + (1 if key.endswith("weight") else 0)
    return state


@pytest.mark.parametrize("num_layers,units", [(50, (3, 4, 14, 3)), (100, (3, 13, 30, 3)), (152, (3, 8, 36, 3))])
def test_depth_layout_matches_treb1en(num_layers, units):
    model = irse.Backbone(112, num_layers, "ir_se")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == treb1en_layout(units)
    if num_layers == 50:
        n = sum(p.numel() for p in model.parameters())
        print(f"IR-SE50 backbone (112): {n / 1e6:.2f} M parameters")
        assert 43e6 < n < 44.5e6  # the published IR-SE50 has ~43.8 M


def test_ir_mode_has_no_se_and_224_input():
    model = irse.Backbone(224, 50, "ir")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == treb1en_layout((3, 4, 14, 3), se=False, last=14)


def test_strict_load_and_embedding_toy():
    layout = treb1en_layout(TOY["stage_units"], TOY["stage_channels"])
    state = random_state(layout)
    model = irse.Backbone(112, **TOY).eval()
    model.load_state_dict(state, strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    emb = model(x)
    assert emb.shape == (2, 512)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    assert not torch.allclose(emb[0], emb[1])
    print(f"toy ArcFace IR-SE: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")


def test_strict_load_rejects_wrong_layout():
    state = random_state(treb1en_layout(TOY["stage_units"], TOY["stage_channels"]))
    state["body.0.res_layer.5.fc3.weight"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="Unexpected"):
        irse.Backbone(112, **TOY).load_state_dict(state, strict=True)


def test_stage_features_sizes_and_consistency():
    body = irse.IRSEBody(**TOY).eval()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    feats = body.stage_features(x)
    shapes = [tuple(f.shape) for f in feats]
    assert shapes == [(1, 32, 32, 32), (1, 64, 16, 16), (1, 96, 8, 8), (1, 128, 4, 4)]
    assert body.stage_ends == (0, 2, 4, 5)
    torch.testing.assert_close(feats[-1], body(x))
    with torch.device("meta"):
        full = irse.IRSEBody()
        shapes = [tuple(f.shape) for f in full.stage_features(torch.empty(1, 3, 256, 256))]
    assert full.stage_ends == (2, 6, 20, 23)
    assert shapes == [(1, 64, 128, 128), (1, 128, 64, 64), (1, 256, 32, 32), (1, 512, 16, 16)]


def test_bottleneck_shortcuts():
    same = irse.Bottleneck(8, 8, 2)
    x = torch.randn(1, 8, 6, 6)
    assert same(x).shape == (1, 8, 3, 3)
    wider = irse.Bottleneck(8, 16, 1, se=False)
    assert wider(x).shape == (1, 16, 6, 6) and len(wider.res_layer) == 5


def test_load_checkpoint_formats(tmp_path):
    from safetensors.torch import save_file

    state = {"a": torch.arange(3.0)}
    torch.save(state, tmp_path / "w.pth")
    save_file(state, str(tmp_path / "w.safetensors"))
    for name in ("w.pth", "w.safetensors"):
        assert torch.equal(irse.load_checkpoint(tmp_path / name)["a"], state["a"])


def test_bad_configs():
    with pytest.raises(ValueError, match="num_layers"):
        irse.IRSEBody(num_layers=34)
    with pytest.raises(ValueError, match="4 stages"):
        irse.IRSEBody(stage_channels=(8, 16, 32))
    with pytest.raises(ValueError, match="multiple of 16"):
        irse.Backbone(100)


def test_published_ir_se50_loads_strictly_when_installed():
    from models.weights import MissingWeightsError, resolve

    try:
        path = resolve("ir_se50")
    except MissingWeightsError:
        pytest.skip("model_ir_se50.pth is not installed")
    model = irse.Backbone(112, 50, "ir_se").eval()
    model.load_state_dict(irse.load_checkpoint(path), strict=True)
    emb = model(torch.zeros(1, 3, 112, 112))
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(1))


@pytest.mark.parametrize("stride, size", [(1, 6), (2, 6), (2, 7), (3, 8)])
def test_subsample_is_treb1en_max_pool_shortcut_bitwise(stride, size):
    """The identity shortcut's values and input gradients are MaxPool2d(1, stride)'s, bit for bit."""
    x = torch.randn(2, 4, size, size, requires_grad=True)
    grad = torch.randn(2, 4, -(-size // stride), -(-size // stride))
    pooled = torch.nn.MaxPool2d(1, stride)(x)
    (expected,) = torch.autograd.grad(pooled, x, grad)
    sub = irse.Subsample(stride)(x)
    (got,) = torch.autograd.grad(sub, x, grad)
    assert torch.equal(sub, pooled) and torch.equal(got, expected)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_load_arcface_infers_architecture_and_loads_strictly(tmp_path, suffix):
    net = small_arcface(1)
    path = tmp_path / f"arc{suffix}"
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    loaded = load_arcface(str(path))
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded(x), net(x))


def test_architecture_inference_rejects_equal_width_neighbours():
    state = Backbone(input_size=16, stage_channels=(8, 8, 16, 16), stage_units=(1, 1, 1, 1)).state_dict()
    with pytest.raises(ValueError, match="stage_units"):
        backbone_kwargs_from_state(state)
    kw = backbone_kwargs_from_state(small_arcface().state_dict())
    assert kw["input_size"] == 32 and kw["mode"] == "ir_se" and list(kw["stage_units"]) == [1, 1, 2, 1]
