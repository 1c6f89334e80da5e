"""NVlabs -> rosinality conversion against a small NVlabs-layout generator written here from NVlabs' semantics."""

import json
import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from experiments import convert
from models.stylegan2 import load_generator

SIZE, W_DIM, N_MLP = 16, 8, 2
CHANNELS = {4: 8, 8: 6, 16: 4}
FILTER = torch.tensor([1.0, 3.0, 3.0, 1.0]).outer(torch.tensor([1.0, 3.0, 3.0, 1.0])) / 64  # setup_filter


def lrelu(x, bias):
    return F.leaky_relu(x + bias.view(1, -1, *[1] * (x.ndim - 2)), 0.2) * math.sqrt(2)


def fir(x, f, pad):
    """NVlabs upfirdn2d without resampling: pad [x0, x1, y0, y1], then convolve (flip_filter=False)
    each channel with f."""
    c = x.shape[1]
    return F.conv2d(F.pad(x, pad), f.flip([0, 1]).expand(c, 1, *f.shape), groups=c)


class FC(nn.Module):
    def __init__(self, cin, cout, lr=1.0, bias_init=0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr)
        self.bias = nn.Parameter(torch.full((cout,), bias_init) + 0.1 * torch.randn(cout))
        self.weight_gain, self.bias_gain = lr / math.sqrt(cin), lr

    def forward(self, x):
        return x @ (self.weight * self.weight_gain).t() + self.bias * self.bias_gain


class Layer(nn.Module):
    """SynthesisLayer: affine styles, modulated conv (transposed conv when up=2, as conv2d_resample),
    const noise * noise_strength, bias + lrelu * sqrt(2)."""

    def __init__(self, cin, cout, res, up):
        super().__init__()
        self.up = up
        self.affine = FC(W_DIM, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3))
        self.bias = nn.Parameter(0.1 * torch.randn(cout))
        self.noise_strength = nn.Parameter(0.3 * torch.randn(()))
        self.register_buffer("noise_const", torch.randn(res, res))
        self.register_buffer("resample_filter", FILTER.clone())

    def forward(self, x, w):
        b, cin = x.shape[:2]
        wt = self.weight[None] * self.affine(w).view(b, 1, cin, 1, 1)
        wt = wt * (wt.square().sum([2, 3, 4], keepdim=True) + 1e-8).rsqrt()
        x = x.reshape(1, b * cin, *x.shape[2:])
        if self.up == 2:
            # conv2d_resample(up=2, padding=1, flip_weight=False): the wrapper gets flip_weight=True, so no
            # flip; transposed conv with padding 0, then upfirdn2d with padding 1 on each side and gain 4
            wt = wt.transpose(1, 2).reshape(b * cin, -1, 3, 3)
            x = F.conv_transpose2d(x, wt, stride=2, groups=b)
            x = fir(x, self.resample_filter * 4, [1, 1, 1, 1])
        else:
            x = F.conv2d(x, wt.reshape(-1, cin, 3, 3), padding=1, groups=b)
        x = x.reshape(b, -1, *x.shape[2:]) + self.noise_const * self.noise_strength
        return lrelu(x, self.bias)


class ToRGB(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.affine = FC(W_DIM, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(3, cin, 1, 1))
        self.bias = nn.Parameter(0.1 * torch.randn(3))

    def forward(self, x, w):
        styles = self.affine(w) / math.sqrt(x.shape[1])
        return torch.einsum("bchw,oc,bc->bohw", x, self.weight[:, :, 0, 0], styles) + self.bias.view(1, -1, 1, 1)


class Block(nn.Module):
    def __init__(self, res):
        super().__init__()
        cout = CHANNELS[res]
        if res == 4:
            self.const = nn.Parameter(torch.randn(cout, 4, 4))
        else:
            self.conv0 = Layer(CHANNELS[res // 2], cout, res, up=2)
        self.conv1 = Layer(cout, cout, res, up=1)
        self.torgb = ToRGB(cout)
        self.register_buffer("resample_filter", FILTER.clone())

    def forward(self, x, img, ws):
        """ws: this block's slice (B, num_conv + 1, W_DIM)."""
        if hasattr(self, "const"):
            x = self.conv1(self.const.expand(ws.shape[0], -1, -1, -1), ws[:, 0])
        else:
            x = self.conv1(self.conv0(x, ws[:, 0]), ws[:, 1])
        if img is not None:  # upsample2d: zero insertion, pad (2, 1), filter with gain 4
            up = img.new_zeros(*img.shape[:2], img.shape[2] * 2, img.shape[3] * 2)
            up[:, :, ::2, ::2] = img
            img = fir(up, self.resample_filter * 4, [2, 1, 2, 1])
        y = self.torgb(x, ws[:, -1])
        return x, y if img is None else img + y


class Mapping(nn.Module):
    def __init__(self, num_ws):
        super().__init__()
        self.num_ws = num_ws
        for i in range(N_MLP):
            setattr(self, f"fc{i}", FC(W_DIM, W_DIM, lr=0.01))
        self.register_buffer("w_avg", torch.randn(W_DIM))

    def forward(self, z, c):
        x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        for i in range(N_MLP):
            fc = getattr(self, f"fc{i}")
            x = lrelu(x @ (fc.weight * fc.weight_gain).t(), fc.bias * fc.bias_gain)
        return x[:, None].repeat(1, self.num_ws, 1)


class Synthesis(nn.Module):
    def __init__(self):
        super().__init__()
        self.resolutions = [2**i for i in range(2, int(math.log2(SIZE)) + 1)]
        for res in self.resolutions:
            setattr(self, f"b{res}", Block(res))

    def forward(self, ws, noise_mode="const", force_fp32=True):
        x = img = None
        w_idx = 0
        for res in self.resolutions:
            n_conv = 1 if res == 4 else 2
            x, img = getattr(self, f"b{res}")(x, img, ws[:, w_idx : w_idx + n_conv + 1])
            w_idx += n_conv
        return img


class NVlabsGenerator(nn.Module):
    """stylegan2-ada-pytorch's G layout and API (mapping(z, c), synthesis(ws, noise_mode=...))."""

    def __init__(self):
        super().__init__()
        self.synthesis = Synthesis()
        self.mapping = Mapping(num_ws=2 * int(math.log2(SIZE)) - 2)


class Marker:
    """Unpickling this creates a file: evidence of whether the pickle was loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture(scope="module")
def nv():
    torch.manual_seed(0)
    return NVlabsGenerator().eval()


def test_upsample_filter_helper_matches_nvlabs_padding():
    """The img upsampling above (pad (2, 1) after zero insertion) equals the rosinality Upsample op."""
    from models.stylegan2 import Upsample

    img = torch.randn(1, 3, 4, 4)
    up = img.new_zeros(1, 3, 8, 8)
    up[:, :, ::2, ::2] = img
    mine = fir(up, FILTER * 4, [2, 1, 2, 1])
    torch.testing.assert_close(mine, Upsample([1, 3, 3, 1])(img))


def test_config_and_key_mapping(nv):
    sd = nv.state_dict()
    cfg = convert.nvlabs_config(sd)
    assert cfg == {"size": SIZE, "style_dim": W_DIM, "n_mlp": N_MLP, "channels": CHANNELS}
    ckpt = convert.nvlabs_to_rosinality(sd)
    g = ckpt["g_ema"]
    assert torch.equal(g["style.2.weight"], sd["mapping.fc1.weight"])
    assert torch.equal(g["input.input"][0], sd["synthesis.b4.const"])
    assert torch.equal(g["convs.2.conv.weight"][0], sd["synthesis.b16.conv0.weight"])  # not flipped
    assert torch.equal(g["convs.3.conv.modulation.bias"], sd["synthesis.b16.conv1.affine.bias"])
    assert torch.equal(g["noises.noise_4"][0, 0], sd["synthesis.b16.conv1.noise_const"])
    assert torch.equal(g["to_rgbs.1.bias"].flatten(), sd["synthesis.b16.torgb.bias"])
    assert torch.equal(ckpt["latent_avg"], sd["mapping.w_avg"])
    flipped = convert.nvlabs_to_rosinality(sd, affine_bias_offset=1.0, flip_up_weights=True)["g_ema"]
    assert torch.equal(flipped["convs.2.conv.weight"][0], sd["synthesis.b16.conv0.weight"].flip([2, 3]))
    assert torch.equal(flipped["convs.3.conv.weight"], g["convs.3.conv.weight"])  # only up-convs flip
    assert torch.equal(flipped["to_rgb1.conv.modulation.bias"], g["to_rgb1.conv.modulation.bias"] + 1)
    with pytest.raises(ValueError, match="unsupported"):
        convert.nvlabs_to_rosinality({**sd, "mapping.embed.weight": torch.zeros(8, 3)})


def test_converted_generator_reproduces_nvlabs_images(nv, tmp_path):
    ckpt = convert.nvlabs_to_rosinality(nv.state_dict())
    torch.save(ckpt, tmp_path / "g.pt")
    g, latent_avg = load_generator(tmp_path / "g.pt", SIZE, style_dim=W_DIM, n_mlp=N_MLP, channels=CHANNELS)
    assert torch.equal(latent_avg, nv.mapping.w_avg)
    torch.manual_seed(1)
    z = torch.randn(3, W_DIM)
    w_plus = torch.randn(3, g.n_latent, W_DIM)  # distinct rows: also checks the per-layer W index use
    with torch.no_grad():
        torch.testing.assert_close(g.get_latent(z), nv.mapping(z, None)[:, 0])
        ref = nv.synthesis(w_plus)
        ours, _ = g([w_plus], input_is_latent=True, randomize_noise=False)
        assert ref.shape == ours.shape == (3, 3, SIZE, SIZE)
        assert (ours - ref).abs().max() < 1e-5
        # the flip matters: converting with it gives a different generator
        wrong = convert.build_converted(
            convert.nvlabs_to_rosinality(nv.state_dict(), flip_up_weights=True), convert.nvlabs_config(nv.state_dict())
        )
        assert (wrong([w_plus], input_is_latent=True, randomize_noise=False)[0] - ref).abs().max() > 1e-2


def test_tf_style_affine_bias_offset(nv):
    """A state dict holding TF's convention (modulation bias stored minus 1) converts with offset 1."""
    tf_like = {k: v - 1 if k.endswith("affine.bias") else v for k, v in nv.state_dict().items()}
    cfg = convert.nvlabs_config(tf_like)
    w = torch.randn(2, 6, W_DIM)
    with torch.no_grad():
        ours, _ = convert.build_converted(convert.nvlabs_to_rosinality(tf_like, affine_bias_offset=1.0), cfg)(
            [w], input_is_latent=True, randomize_noise=False
        )
        torch.testing.assert_close(ours, nv.synthesis(w), atol=1e-5, rtol=1e-5)


def test_cli_refuses_pickles_without_trust(tmp_path):
    marker = tmp_path / "code_ran"
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"G_ema": Marker(str(marker))}, f)
    with pytest.raises(SystemExit, match="--trust-pickle"):
        convert.run([str(tmp_path / "evil.pkl"), str(tmp_path / "out.pt")])
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_cli_converts_trusted_pickle_and_reports_pixel_difference(nv, tmp_path, capsys):
    with open(tmp_path / "net.pkl", "wb") as f:
        pickle.dump({"G_ema": nv}, f)
    report = convert.run([str(tmp_path / "net.pkl"), str(tmp_path / "out.pt"), "--trust-pickle"])
    assert json.loads(capsys.readouterr().out)["max_pixel_difference"] == report["max_pixel_difference"]
    assert report["max_pixel_difference"] < 1e-4
    ckpt = torch.load(tmp_path / "out.pt", weights_only=True)
    assert set(ckpt) == {"g_ema", "latent_avg"}
    # an extracted state dict needs no trust and has no runnable source to compare with
    torch.save(nv.state_dict(), tmp_path / "sd.pt")
    report = convert.run([str(tmp_path / "sd.pt"), str(tmp_path / "out2.pt")])
    assert report["max_pixel_difference"] is None
    assert torch.equal(
        torch.load(tmp_path / "out2.pt", weights_only=True)["g_ema"]["conv1.conv.weight"],
        ckpt["g_ema"]["conv1.conv.weight"],
    )
