"""StyleGAN2: rosinality state-dict layout, strict loading, input latent, W+ index mapping, toy config, the frozen
generator's factored backward as a whole."""

import argparse
import math

import pytest
import torch

from models.stylegan2 import Discriminator, Generator, load_generator, save_generator

TOY = dict(style_dim=128, n_mlp=4, channels={4: 128, 8: 128, 16: 64, 32: 64, 64: 32})
TINY = dict(style_dim=16, n_mlp=2, channels={4: 16, 8: 16, 16: 8, 32: 8})  # behaviour tests: fast on CPU


def rosinality_channels(cm):
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}


def expected_generator_keys(size, style_dim=512, n_mlp=8, cm=2):
    """rosinality's Generator state dict {key: shape}, written out from REFERENCE.md section 1."""
    ch, log = rosinality_channels(cm), int(math.log2(size))
    keys = {}
    for i in range(1, n_mlp + 1):
        keys[f"style.{i}.weight"], keys[f"style.{i}.bias"] = (style_dim, style_dim), (style_dim,)

    def modconv(prefix, cin, cout, k):
        keys[f"{prefix}.weight"] = (1, cout, cin, k, k)
        keys[f"{prefix}.modulation.weight"], keys[f"{prefix}.modulation.bias"] = (cin, style_dim), (cin,)

    def styled(prefix, cin, cout, up):
        modconv(f"{prefix}.conv", cin, cout, 3)
        if up:
            keys[f"{prefix}.conv.blur.kernel"] = (4, 4)
        keys[f"{prefix}.noise.weight"], keys[f"{prefix}.activate.bias"] = (1,), (cout,)

    def to_rgb(prefix, cin, up):
        modconv(f"{prefix}.conv", cin, 3, 1)
        keys[f"{prefix}.bias"] = (1, 3, 1, 1)
        if up:
            keys[f"{prefix}.upsample.kernel"] = (4, 4)

    keys["input.input"] = (1, ch[4], 4, 4)
    styled("conv1", ch[4], ch[4], False)
    to_rgb("to_rgb1", ch[4], False)
    cin = ch[4]
    for j, res_log in enumerate(range(3, log + 1)):
        cout = ch[2**res_log]
        styled(f"convs.{2 * j}", cin, cout, True)
        styled(f"convs.{2 * j + 1}", cout, cout, False)
        to_rgb(f"to_rgbs.{j}", cout, True)
        cin = cout
    for i in range(2 * log - 3):
        r = 2 ** ((i + 5) // 2)
        keys[f"noises.noise_{i}"] = (1, 1, r, r)
    return keys


def expected_discriminator_keys(size, cm=2):
    ch, log = rosinality_channels(cm), int(math.log2(size))
    keys = {"convs.0.0.weight": (ch[size], 3, 1, 1), "convs.0.1.bias": (ch[size],)}
    cin = ch[size]
    for n, i in enumerate(range(log, 2, -1), start=1):
        cout = ch[2 ** (i - 1)]
        keys.update(
            {
                f"convs.{n}.conv1.0.weight": (cin, cin, 3, 3),
                f"convs.{n}.conv1.1.bias": (cin,),
                f"convs.{n}.conv2.0.kernel": (4, 4),
                f"convs.{n}.conv2.1.weight": (cout, cin, 3, 3),
                f"convs.{n}.conv2.2.bias": (cout,),
                f"convs.{n}.skip.0.kernel": (4, 4),
                f"convs.{n}.skip.1.weight": (cout, cin, 1, 1),
            }
        )
        cin = cout
    keys.update(
        {
            "final_conv.0.weight": (ch[4], cin + 1, 3, 3),
            "final_conv.1.bias": (ch[4],),
            "final_linear.0.weight": (ch[4], ch[4] * 16),
            "final_linear.0.bias": (ch[4],),
            "final_linear.1.weight": (1, ch[4]),
            "final_linear.1.bias": (1,),
        }
    )
    return keys


def shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    g = Generator(32, **TINY).eval()
    with torch.no_grad():  # non-zero noise strengths so noise handling is observable
        for name, p in g.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.1)
    return g


@pytest.mark.parametrize("size", [1024, 256])
def test_rosinality_layout(size):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        g, d = Generator(size, 512, 8, channel_multiplier=2), Discriminator(size)
    assert shapes(g) == expected_generator_keys(size)
    assert shapes(d) == expected_discriminator_keys(size)
    assert (g.n_latent, g.num_layers) == (2 * g.log_size - 2, 2 * g.log_size - 3)
    if size == 1024:
        assert abs(sum(p.numel() for p in g.parameters()) - 30.37e6) < 0.01e6
        assert (g.n_latent, g.num_layers) == (18, 17)


def test_strict_weights_only_load_from_disk(tmp_path):
    torch.manual_seed(1)
    g, d = Generator(32, **TINY), Discriminator(32, channels=TINY["channels"])
    assert set(g.state_dict()) == set(expected_generator_keys(32, style_dim=16, n_mlp=2))
    latent_avg = torch.randn(16)
    torch.save({"g_ema": g.state_dict(), "d": d.state_dict(), "latent_avg": latent_avg}, tmp_path / "ck.pt")

    ckpt = torch.load(tmp_path / "ck.pt", map_location="cpu", weights_only=True)
    Discriminator(32, channels=TINY["channels"]).load_state_dict(ckpt["d"], strict=True)
    loaded, avg = load_generator(tmp_path / "ck.pt", 32, **TINY)
    assert torch.equal(avg, latent_avg)
    for k, v in g.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k

    # rosinality's train.py checkpoints also keep its argparse Namespace and the optimiser states
    train_ckpt = {
        "g": g.state_dict(),
        "d": d.state_dict(),
        "g_ema": g.state_dict(),
        "g_optim": torch.optim.Adam(g.parameters()).state_dict(),
        "args": argparse.Namespace(size=32, r1=10.0, path_regularize=2.0),
        "ada_aug_p": 0.0,
    }
    torch.save(train_ckpt, tmp_path / "010000.pt")
    from_training, _ = load_generator(tmp_path / "010000.pt", 32, **TINY)
    for k, v in g.state_dict().items():
        assert torch.equal(from_training.state_dict()[k], v), k

    bad = dict(ckpt["g_ema"])
    bad["convs.0.conv.extra"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_generator({"g_ema": bad}, 32, **TINY)
    del bad["convs.0.conv.extra"], bad["noises.noise_3"]
    with pytest.raises(RuntimeError, match="Missing key"):
        load_generator({"g_ema": bad}, 32, **TINY)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_save_load_round_trip_gives_same_images(tiny, tmp_path, suffix):
    save_generator(tmp_path / f"g{suffix}", tiny, torch.arange(16.0))
    g, avg = load_generator(tmp_path / f"g{suffix}", 32, **TINY)
    assert torch.equal(avg, torch.arange(16.0))
    w = torch.randn(2, 16)
    with torch.no_grad():
        a, _ = tiny([w], randomize_noise=False)
        b, _ = g.eval()([w], randomize_noise=False)
    assert torch.equal(a, b)


def test_toy_configuration():
    toy = Generator(64, **TOY)
    assert toy.channels == {**rosinality_channels(2), 4: 128, 8: 128, 16: 64, 32: 64, 64: 32}
    assert (toy.n_latent, toy.num_layers, toy.style_dim) == (10, 9, 128)
    assert toy.input.input.shape == (1, 128, 4, 4) and toy.to_rgbs[-1].conv.weight.shape == (1, 3, 32, 1, 1)
    assert Generator(64).channels == rosinality_channels(2)
    with torch.no_grad():
        img, latent = toy([torch.randn(2, 128)], return_latents=True)
    assert img.shape == (2, 3, 64, 64) and latent.shape == (2, 10, 128) and torch.isfinite(img).all()
    assert [n.shape[-1] for n in toy.make_noise()] == [4, 8, 8, 16, 16, 32, 32, 64, 64]
    assert toy.mean_latent(64).shape == (1, 128)


def test_input_latent_none_equals_constant_and_given_latent_changes_output(tiny):
    w = tiny.get_latent(torch.randn(2, 16))
    noise = tiny.make_noise(2)
    with torch.no_grad():
        base, _ = tiny([w], input_is_latent=True, noise=noise)
        same, _ = tiny([w], input_is_latent=True, noise=noise, input_latent=tiny.constant_input(2))
        other, _ = tiny([w], input_is_latent=True, noise=noise, input_latent=torch.randn(2, 16, 4, 4))
    assert torch.equal(base, same)
    assert (other - base).abs().amax(dim=(1, 2, 3)).min() > 1e-2
    latent = torch.randn(2, 16, 4, 4, requires_grad=True)
    tiny([w.detach()], input_is_latent=True, noise=noise, input_latent=latent)[0].square().mean().backward()
    assert latent.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="input_latent"):
        tiny([w], input_is_latent=True, input_latent=torch.randn(2, 8, 4, 4))


def test_w_plus_rows_drive_rosinality_layers(tiny):
    """Perturbing row k of a W+ code changes exactly the styles of the layers rosinality assigns it:
    conv1 <- w[0], to_rgb1 <- w[1], then convs[2j] <- w[2j+1], convs[2j+1] <- w[2j+2], to_rgbs[j] <- w[2j+3]
    (so a to_rgb and the next block's first conv share a row)."""
    layers = {"conv1": 0, "to_rgb1": 1}
    for j in range(len(tiny.to_rgbs)):
        layers.update({f"convs.{2 * j}": 2 * j + 1, f"convs.{2 * j + 1}": 2 * j + 2, f"to_rgbs.{j}": 2 * j + 3})
    assert set(layers.values()) == set(range(tiny.n_latent))
    seen = {}
    hooks = [
        tiny.get_submodule(name).register_forward_hook(
            lambda m, args, out, name=name: seen.__setitem__(name, args[1].clone())
        )
        for name in layers
    ]
    try:
        w = torch.randn(1, tiny.n_latent, 16)
        with torch.no_grad():
            tiny([w], input_is_latent=True, randomize_noise=False)
            base = dict(seen)
            for k in range(tiny.n_latent):
                w2 = w.clone()
                w2[:, k] += 1.0
                tiny([w2], input_is_latent=True, randomize_noise=False)
                changed = {name for name in layers if not torch.equal(seen[name], base[name])}
                assert changed == {name for name, idx in layers.items() if idx == k}, k
                assert all(torch.equal(seen[name], w2[:, k]) for name in changed)
    finally:
        for h in hooks:
            h.remove()


def test_style_mixing_truncation_and_noise(tiny):
    z1, z2 = torch.randn(2, 16), torch.randn(2, 16)
    with torch.no_grad():
        _, latent = tiny([z1, z2], inject_index=3, return_latents=True)
        w1, w2 = tiny.get_latent(z1), tiny.get_latent(z2)
        assert torch.allclose(latent[:, :3], w1[:, None].expand(-1, 3, -1))
        assert torch.allclose(latent[:, 3:], w2[:, None].expand(-1, 5, -1))
        avg = tiny.mean_latent(256)
        _, truncated = tiny([z1], truncation=0.0, truncation_latent=avg, return_latents=True)
        assert torch.allclose(truncated, avg.expand(2, 8, -1))
        a, _ = tiny([w1], input_is_latent=True, randomize_noise=False)
        b, _ = tiny([w1], input_is_latent=True, randomize_noise=False)
        c, _ = tiny([w1], input_is_latent=True)
        stored = [getattr(tiny.noises, f"noise_{i}") for i in range(tiny.num_layers)]
        d, _ = tiny([w1], input_is_latent=True, noise=stored)
    assert torch.equal(a, b) and torch.equal(a, d) and not torch.allclose(a, c)


def test_frozen_generator_w_gradient_in_float32(tiny):
    """The whole frozen generator: the same images, the W+ gradient to float32 rounding."""
    tiny.requires_grad_(False)
    w = torch.randn(2, tiny.n_latent, 16)
    results = []
    for factored in (False, True):
        for m in tiny.modules():
            if hasattr(m, "factored_backward"):
                m.factored_backward = factored
        wi = w.clone().requires_grad_()
        image, _ = tiny([wi], input_is_latent=True, randomize_noise=False)
        image.square().mean().backward()
        results.append((image.detach(), wi.grad))
    (image, grad), (image_f, grad_f) = results
    assert torch.equal(image_f, image)
    torch.testing.assert_close(grad_f, grad, rtol=1e-4, atol=1e-5 * grad.abs().max().item())


def test_discriminator_any_batch_and_r1_double_backward():
    """R1 = |dD/dx|^2 differentiated w.r.t. the weights (double backward) matches central differences."""
    torch.manual_seed(3)
    d = Discriminator(16, channels={4: 8, 8: 8, 16: 4}).double()
    assert d(torch.randn(6, 3, 16, 16, dtype=torch.float64)).shape == (6, 1)  # 6: not a multiple of 4
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64, requires_grad=True)

    def r1():
        (grad,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
        return grad.square().sum()

    r1().backward()
    weights = [p for name, p in d.named_parameters() if name.endswith("weight")]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)
    w = d.convs[1].conv2[1].weight  # behind a Blur (upfirdn2d) and a fused lrelu
    direction, eps = torch.randn_like(w), 1e-5
    with torch.no_grad():
        w += eps * direction
    plus = r1().item()
    with torch.no_grad():
        w -= 2 * eps * direction
    minus = r1().item()
    assert abs((plus - minus) / (2 * eps) - (w.grad * direction).sum().item()) < 1e-5 * max(1.0, abs(plus))
