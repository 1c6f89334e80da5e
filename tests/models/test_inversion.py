"""ReStyle iterative inversion around a frozen toy StyleGAN2: step 0, residuals, gradients, kinds."""

import pytest
import torch
import torch.nn.functional as F

from models import encoders, ide, inversion
from models.stylegan2 import Generator
from tests.models.test_ide import randomize_fcns
from tests.models.test_irse import TOY

TOY_G = dict(style_dim=128, n_mlp=4, channels={4: 128, 8: 128, 16: 64, 32: 64, 64: 32})
ENC = dict(n_styles=10, style_dim=128, input_size=64, **TOY)


def toy_generator():
    """A generator with the toy world's style sizes at 64 px (n_latent 10), noise weights set as in a trained one."""
    torch.manual_seed(0)
    g = Generator(64, **TOY_G)
    assert g.n_latent == 10
    with torch.no_grad():  # fresh generators have zero noise weights, which would hide noise handling
        for name, p in g.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.2)
    return g


@pytest.fixture(scope="module")
def generator():
    g = toy_generator()
    print(f"toy generator: {sum(p.numel() for p in g.parameters()) / 1e6:.2f} M parameters")
    return g


def make(kind, generator, n_iters=3, contour=3, **kw):
    torch.manual_seed(1)
    if kind == "restyle":
        enc = encoders.BackboneEncoder(input_nc=contour + 6, **ENC)
    elif kind == "psp":
        enc = encoders.GradualStyleEncoder(input_nc=contour + 3, **ENC)
    else:
        enc = ide.IDEEncoder(contour_channels=contour, latent_channels=128, ifm_hidden=16, **ENC, **kw)
    return inversion.IterativeInverter(enc, generator, kind, n_iters=n_iters, loss_resolution=64)


def inputs(b=2, contour=3, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, contour, 64, 64, generator=g) * 2 - 1, torch.rand(b, 3, 64, 64, generator=g) * 2 - 1


def record_inputs(module):
    seen = []
    module.register_forward_hook(lambda m, args, out: seen.append((args, out)))
    return seen


def render(generator, w, latent=None):
    with torch.no_grad():
        return generator([w], input_is_latent=True, randomize_noise=False, input_latent=latent)[0]


def test_step0_starts_from_average_latent_and_image(generator):
    model = make("restyle", generator).eval()
    seen = record_inputs(model.encoder)
    contour, identity = inputs()
    with torch.no_grad():
        (step,) = model(contour, identity, n_iters=1)
    (x,), dw = seen[0]
    avg = render(generator, model.latent_avg[None])
    torch.testing.assert_close(model.average_image(), avg)
    torch.testing.assert_close(x, torch.cat([contour, identity, avg.expand(2, -1, -1, -1)], 1))
    torch.testing.assert_close(step.w, model.latent_avg + dw)
    torch.testing.assert_close(step.image, render(generator, step.w))
    assert step.index == 0 and step.input_latent is None and step.image.shape == (2, 3, 64, 64)


def test_residuals_accumulate_with_input_latent(generator):
    model = make("ide", generator, n_iters=3).eval()
    with torch.no_grad():
        model.encoder.latent_head.convs[-1].weight.normal_(0, 0.05)
    randomize_fcns(model.encoder)
    seen = record_inputs(model.encoder)
    contour, identity = inputs()
    with torch.no_grad():
        steps = model(contour, identity)
    assert [s.index for s in steps] == [0, 1, 2]
    prev_w, prev_lat = model.latent_avg.expand(2, -1, -1), generator.constant_input(2)
    prev_img = model.average_image().expand(2, -1, -1, -1)
    with torch.no_grad():
        condition = model.encoder.identity_condition(model.encoder.identity_features(identity))
    assert all(torch.equal(a, b) for a, b in zip(steps[0].identity_condition, condition))
    for step, ((x,), (dw, dlat)) in zip(steps, [(a, o) for a, o in seen]):
        torch.testing.assert_close(x, torch.cat([contour, prev_img], 1))
        assert dlat.abs().amax() > 0
        torch.testing.assert_close(step.w, prev_w + dw)
        torch.testing.assert_close(step.input_latent, prev_lat + dlat)
        torch.testing.assert_close(step.image, render(generator, step.w, step.input_latent))
        prev_w, prev_lat, prev_img = step.w, step.input_latent, step.image
    assert not torch.allclose(steps[0].image, steps[2].image)


def test_fresh_input_latent_head_starts_at_constant_input(generator):
    model = make("ide", generator, n_iters=1).eval()
    with torch.no_grad():
        (step,) = model(*inputs())
    assert torch.equal(step.input_latent, generator.constant_input(2))


def test_single_pass_equals_first_step(generator):
    model = make("ide", generator, n_iters=3).eval()
    randomize_fcns(model.encoder)
    contour, identity = inputs()
    with torch.no_grad():
        (single,) = model(contour, identity, n_iters=1)
        first = model(contour, identity)[0]
    torch.testing.assert_close(single.w, first.w)
    torch.testing.assert_close(single.image, first.image)


def test_gradients_reach_encoder_not_generator(generator):
    model = make("ide", generator, n_iters=2).train()
    randomize_fcns(model.encoder)
    assert not model.decoder.training and model.encoder.training
    contour, identity = inputs()
    for step in model.iterate(contour, identity):
        (step.image_loss_res - contour).square().mean().backward()
        assert step.w.requires_grad and step.image.requires_grad
    assert all(p.grad is None and not p.requires_grad for p in generator.parameters())
    named = dict(model.encoder.named_parameters())
    for name in (
        "input_layer.0.weight",
        "identity.body.0.res_layer.1.weight",
        "styles.0.linear.weight",
        "latent_head.convs.2.weight",
        "ifms.5.beta.2.weight",
    ):
        assert named[name].grad is not None and named[name].grad.abs().sum() > 0, name


def test_per_step_backward_equals_summed_loss(generator):
    """Steps share no graph: per-step backward (ReStyle) == backward of the summed losses."""
    contour, identity = inputs()
    grads = []
    for per_step in (True, False):
        model = make("restyle", generator, n_iters=2).train()
        if per_step:
            for step in model.iterate(contour, identity, randomize_noise=False):
                step.image_loss_res.square().mean().backward()
        else:
            steps = model(contour, identity, randomize_noise=False)
            sum(s.image_loss_res.square().mean() for s in steps).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.encoder.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)


def test_identity_features_computed_once_when_they_cannot_change(generator):
    model = make("ide", generator, n_iters=3, identity_freeze=True).eval()
    seen = record_inputs(model.encoder.identity.input_layer)
    with torch.no_grad():
        steps = model(*inputs())
    assert len(seen) == 1 and steps[2].identity_features is steps[0].identity_features
    fcn = record_inputs(model.encoder.ifms["0"].gamma)
    model.train()(*inputs())  # training: the frozen features once, the IFMs' FCNs (a graph each) per step
    assert len(seen) == 2 and len(fcn) == 3
    trainable = make("ide", generator, n_iters=3)
    seen = record_inputs(trainable.encoder.identity.input_layer)
    fcn = record_inputs(trainable.encoder.ifms["0"].gamma)
    with torch.no_grad():  # eval mode, no gradients: the same condition at every step
        steps = trainable.eval()(*inputs())
    assert len(seen) == 1 and len(fcn) == 1 and steps[2].identity_condition is steps[0].identity_condition
    trainable.train()(*inputs())  # a graph per step (and BatchNorm updates): recomputed
    assert len(seen) == 4 and len(fcn) == 4


def test_shared_identity_features_give_the_recomputed_gradients(generator):
    """Per-step backward with E_id and the IFMs' FCNs run once per batch (SharedIdentityCondition) ==
    recomputing them at every step: the same losses, gradients up to summation order, BatchNorm statistics
    up to rounding."""
    contour, identity = inputs()
    results = []
    for shared in (False, True):
        model = make("ide", generator, n_iters=3).train()
        randomize_fcns(model.encoder)
        seen = record_inputs(model.encoder.identity.input_layer)
        features = inversion.SharedIdentityCondition(model.encoder, identity, 3) if shared else None
        step, losses = None, []
        for t in range(3):
            (step,) = model(
                contour,
                identity,
                n_iters=1,
                start=step,
                randomize_noise=False,
                identity_condition=features.for_step(t) if shared else None,
            )
            loss = step.image_loss_res.square().mean()
            loss.backward()
            losses.append(loss.item())
        assert len(seen) == (1 if shared else 3)
        grads = {n: p.grad.clone() for n, p in model.encoder.named_parameters()}
        results.append((losses, grads, dict(model.encoder.identity.named_buffers())))
    (losses, grads, buffers), (shared_losses, shared_grads, shared_buffers) = results
    assert shared_losses == losses
    assert any(grads[n].abs().sum() > 0 for n in grads if n.startswith("identity."))
    # float32 rounding of a different summation order, relative to the gradients' scale (a gradient that
    # cancels to ~0, as that of a bias BatchNorm removes, keeps the rounding of its terms)
    scale = max(g.abs().max().item() for g in grads.values())
    for n in grads:
        torch.testing.assert_close(shared_grads[n], grads[n], rtol=1e-4, atol=1e-5 * scale, msg=n)
    for n in buffers:
        torch.testing.assert_close(shared_buffers[n], buffers[n], msg=n)


def test_psp_single_pass(generator):
    model = make("psp", generator, n_iters=1, contour=1).eval()
    seen = record_inputs(model.encoder)
    contour, identity = inputs(contour=1)
    with torch.no_grad():
        (step,) = model(contour, identity)
    (x,), dw = seen[0]
    torch.testing.assert_close(x, torch.cat([contour, identity], 1))
    torch.testing.assert_close(step.w, model.latent_avg + dw)
    with pytest.raises(ValueError, match="single-pass"):
        model(contour, identity, n_iters=2)
    with pytest.raises(ValueError):
        inversion.IterativeInverter(model.encoder, generator, "psp", n_iters=5)


def test_loss_resolution_pooling_and_noise(generator):
    model = make("restyle", generator, n_iters=1)
    model.loss_resolution = 16
    contour, identity = inputs()
    model.eval()
    with torch.no_grad():
        (a,) = model(contour, identity)
        (b,) = model(contour, identity)
        (c,) = model(contour, identity, randomize_noise=True)
    assert a.image_loss_res.shape == (2, 3, 16, 16)
    torch.testing.assert_close(a.image_loss_res, F.adaptive_avg_pool2d(a.image, 16))
    assert torch.equal(a.image, b.image) and not torch.equal(a.image, c.image)


def test_latent_avg_forms_and_default(generator):
    model = make("restyle", generator, n_iters=1)
    state = torch.get_rng_state()
    again = inversion.sample_latent_avg(generator)
    assert torch.equal(state, torch.get_rng_state())  # the default start code leaves the global RNG alone
    torch.testing.assert_close(model.latent_avg, again.expand(10, -1))
    old = model.average_image()
    for shape in [(128,), (1, 128), (10, 128)]:
        model.set_latent_avg(torch.full(shape, 0.3))
        assert torch.equal(model.latent_avg, torch.full((10, 128), 0.3))
    assert not torch.allclose(model.average_image(), old)
    assert set(model.state_dict()) >= {"latent_avg", "encoder.styles.0.linear.weight", "decoder.input.input"}
    assert "avg_image" not in model.state_dict()


def test_iterate_through_ddp_wrapper(generator, tmp_path):
    """One forward per step, so a DDP-wrapped model iterates with per-step backward."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ddp = DDP(make("restyle", generator, n_iters=2).train())
        steps = []
        for step in inversion.iterate(ddp, *inputs()):
            step.image_loss_res.square().mean().backward()
            steps.append(step)
        assert [s.index for s in steps] == [0, 1]
        assert ddp.module.encoder.input_layer[0].weight.grad.abs().sum() > 0
    finally:
        dist.destroy_process_group()
