"""NVlabs -> rosinality conversion against the NVlabs-layout generator of ``nvlabs_reference``."""

import pytest
import torch

from models import nvlabs_format as convert
from models.stylegan2 import load_generator
from tests.models.nvlabs_reference import CHANNELS, FILTER, N_MLP, SIZE, W_DIM, NVlabsGenerator, fir


@pytest.fixture(scope="module")
def nv():
    torch.manual_seed(0)
    return NVlabsGenerator().eval()


def test_upsample_filter_helper_matches_nvlabs_padding():
    """The img upsampling above (pad (2, 1) after zero insertion) equals the rosinality Upsample op."""
    from models.stylegan2_layers import Upsample

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
        # the reference keeps NVlabs' contracts: a W+ of another layer count or random noise is refused
        with pytest.raises(AssertionError, match="ws must be"):
            nv.synthesis(w_plus[:, 1:])
        with pytest.raises(AssertionError, match="noise_mode"):
            nv.synthesis(w_plus, noise_mode="random")


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
