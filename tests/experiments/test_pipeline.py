"""The inference pipeline on a tiny toy-world run built in the test (random small networks on disk)."""

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from data.conditions import lr_contour, one_hot
from data.images import save_image, save_label_map
from experiments.exports import CheckpointError
from experiments.pipeline import load_pipeline

CHANNELS = {4: 16, 8: 16, 16: 8, 32: 8, 64: 8}
N_ITERS = 3


def make_tiny_run(root: Path, condition: str = "lr"):
    """A run folder as training leaves it (final/encoder.safetensors + final/config.yaml), built from a
    random 64 px generator with non-zero noise weights and an IDE encoder with perturbed weights.

    Returns (run folder, the IterativeInverter whose encoder was exported).
    """
    from data.conditions import condition_channels
    from experiments.config import load_config
    from experiments.methods import EncoderMethod
    from models.build import build_model
    from models.stylegan2 import Generator, NoiseInjection, save_generator

    torch.manual_seed(0)
    root.mkdir(parents=True, exist_ok=True)
    g = Generator(64, style_dim=32, n_mlp=2, channels=CHANNELS)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.3)  # rosinality initialises these to 0: the seed would change nothing
    save_generator(root / "g.safetensors", g, g.mean_latent(64)[0])
    cfg = load_config(
        [
            f"data.condition={condition}",
            "data.input_size=64",
            "data.lr_size=8",
            "generator.size=64",
            "generator.style_dim=32",
            "generator.n_mlp=2",
            f"generator.weights={root / 'g.safetensors'}",
            "generator.channels={4: 16, 8: 16, 16: 8, 32: 8, 64: 8}",
            "model.stage_channels=[8,8,16,16]",
            "model.stage_units=[1,1,1,1]",
            "model.ifm_hidden=8",
            f"model.n_iters={N_ITERS}",
            "model.loss_resolution=64",
            "model.encoder_init=random",
            "model.identity_init=random",
            f"output_dir={root}",
        ]
    )
    from experiments.world import load_frozen_generator

    generator, latent_avg = load_frozen_generator(cfg, torch.device("cpu"))
    model = build_model(cfg.model, generator, condition_channels(condition), latent_avg=latent_avg)
    with torch.no_grad():  # a fresh IDE encoder predicts zero residuals: make the output input-dependent
        for p in model.encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    run = root / f"run-{condition}"
    EncoderMethod.export(SimpleNamespace(cfg=cfg), model, run / "final")
    return run, model.eval()


@pytest.fixture(scope="module")
def lr_run(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("pipeline"))


def rand_images(b: int, size: int, seed: int, channels: int = 3) -> torch.Tensor:
    return torch.rand(b, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_shapes_steps_and_codes(lr_run):
    run, _ = lr_run
    pipe = load_pipeline(run)
    assert (pipe.modality, pipe.input_size, pipe.lr_size, pipe.output_size) == ("lr", 64, 8, 64)
    assert pipe.n_iters == N_ITERS
    out = pipe(rand_images(2, 8, 0), rand_images(2, 64, 1))
    assert out.image.shape == (2, 3, 64, 64) and out.image.abs().max() <= 1
    assert len(out.steps) == len(out.codes) == len(out.input_latents) == N_ITERS
    assert torch.equal(out.steps[-1], out.image)
    assert out.codes[0].shape == (2, 10, 32) and out.input_latents[0].shape == (2, 16, 4, 4)
    assert out.contour.shape == (2, 3, 64, 64) and out.identity.shape == (2, 3, 64, 64)
    assert not torch.allclose(out.steps[0], out.steps[1])  # refinement changes the image
    assert len(pipe(rand_images(2, 8, 0), rand_images(2, 64, 1), n_iters=1).steps) == 1


def test_loads_the_exported_weights(lr_run):
    """The pipeline's output is the exported model's own output on the same prepared inputs."""
    run, model = lr_run
    pipe = load_pipeline(run / "final")
    photo, identity = rand_images(2, 64, 2), rand_images(2, 64, 3)
    out = pipe(photo, identity)
    torch.testing.assert_close(out.contour, lr_contour(photo, 8, 64))
    with torch.no_grad():
        direct = model(out.contour, out.identity, randomize_noise=False)
    torch.testing.assert_close(out.image, direct[-1].image.clamp(-1, 1))
    torch.testing.assert_close(out.codes[-1], direct[-1].w)


def test_determinism_and_seed(lr_run):
    pipe = load_pipeline(lr_run[0])
    c, i = rand_images(1, 8, 4), rand_images(1, 64, 5)
    fixed = pipe(c, i).image
    assert torch.equal(fixed, pipe(c, i).image)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = pipe(c, i, seed=1).image
    assert torch.equal(torch.rand(3), before)  # the seed does not disturb the global RNG
    assert torch.equal(a, pipe(c, i, seed=1).image)
    assert not torch.allclose(a, pipe(c, i, seed=2).image, atol=1e-3)
    assert not torch.allclose(a, fixed, atol=1e-3)


def test_low_precision_runs_under_autocast(lr_run):
    c, i = rand_images(2, 8, 10), rand_images(2, 64, 11)
    full = load_pipeline(lr_run[0])(c, i).image
    half = load_pipeline(lr_run[0], dtype=torch.bfloat16)(c, i)
    assert half.image.dtype == torch.float32 and not torch.equal(half.image, full)
    assert (half.image - full).abs().mean() < 0.05


def test_files_pil_and_broadcast(lr_run, tmp_path):
    pipe = load_pipeline(lr_run[0])
    identity = rand_images(1, 64, 6)[0]
    save_image(identity, tmp_path / "id.png")
    contour = rand_images(1, 8, 7)[0]
    save_image(contour, tmp_path / "c.png")
    as_pil = Image.open(tmp_path / "c.png")
    out = pipe([tmp_path / "c.png", as_pil], tmp_path / "id.png", aligned=True)  # one identity, two contours
    assert out.image.shape[0] == 2 and torch.equal(out.image[0], out.image[1])
    assert out.aligners == ["aligned", "aligned"]
    quantised = lambda x: torch.round((x + 1) * 127.5) / 127.5 - 1
    from_tensors = pipe(quantised(contour), quantised(identity))
    torch.testing.assert_close(out.image[:1], from_tensors.image, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="2 contours and 3 identities"):
        pipe(rand_images(2, 8, 0), rand_images(3, 64, 0))


def test_result_records_the_aligner(lr_run):
    from skimage import data

    from models import dlibface

    if not dlibface.available():
        pytest.skip(f"dlib not installed ({dlibface.INSTALL})")
    pipe = load_pipeline(lr_run[0])
    out = pipe(rand_images(1, 8, 3), [data.astronaut(), Image.fromarray(data.astronaut())])
    assert out.aligners == ["dlib", "dlib"] and torch.equal(out.identity[0], out.identity[1])
    assert pipe.run_tensors(out.contour, out.identity).aligners is None


def test_mask_and_sketch_modalities(tmp_path):
    run, _ = make_tiny_run(tmp_path, "mask")
    pipe = load_pipeline(run)
    labels = torch.zeros(32, 32, dtype=torch.int64)
    labels[8:24, 8:24] = 1
    labels[12:14, 10:14] = 4
    save_label_map(labels, tmp_path / "mask.png")
    out = pipe(tmp_path / "mask.png", rand_images(1, 64, 0))
    expected = one_hot(labels.repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert torch.equal(out.contour[0], expected) and out.image.shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="trained on 'mask' contours"):
        pipe(rand_images(1, 8, 0), rand_images(1, 64, 0), modality="lr")
    with pytest.raises(ValueError, match="out of range for 19 classes"):
        save_label_map(torch.full((8, 8), 40), tmp_path / "bad.png")
        pipe(tmp_path / "bad.png", rand_images(1, 64, 0))

    run, _ = make_tiny_run(tmp_path, "sketch")
    sketch = np.full((48, 48), 255, np.uint8)
    sketch[20:22, :] = 0
    Image.fromarray(sketch).save(tmp_path / "sketch.png")
    pipe = load_pipeline(run)
    out = pipe(tmp_path / "sketch.png", rand_images(1, 64, 0))
    assert out.contour.shape == (1, 1, 64, 64)
    assert out.contour[0, 0, 0, 0] == 1 and out.contour[0, 0, 28, :].max() < 0  # white paper, black line
    rgba = Image.fromarray(np.stack([0 * sketch] * 3 + [255 - sketch], -1))  # black ink on transparency
    torch.testing.assert_close(pipe.prepare_contour(rgba), out.contour, atol=1e-5, rtol=0)


def test_ecosystem_mask_files(tmp_path):
    """pSp's kind of input_mask.png (512 px, class indices) and the same mask colour-coded with the
    CelebAMask-HQ palette give the same contour; a bad one is one line naming it."""
    from data.contour_files import CELEBAMASK_HQ_PALETTE
    from data.images import BadImageError
    from tests.data.test_contour_files import face_labels

    run, _ = make_tiny_run(tmp_path, "mask")
    pipe = load_pipeline(run)
    labels = face_labels(512)
    Image.fromarray(labels, mode="L").save(tmp_path / "input_mask.png")
    Image.fromarray(CELEBAMASK_HQ_PALETTE[labels]).save(tmp_path / "colour.png")
    index, colour = pipe.prepare_contour([tmp_path / "input_mask.png", tmp_path / "colour.png"])
    assert torch.equal(index, colour) and index.shape == (19, 64, 64)
    assert torch.equal(index.argmax(0), torch.from_numpy(labels[::8, ::8].astype(np.int64)))
    Image.fromarray(np.full((32, 32, 3), (10, 200, 90), np.uint8)).save(tmp_path / "green.png")
    with pytest.raises(BadImageError, match=r"green.png: an RGB mask, but 100% of its pixels"):
        pipe.prepare_contour(tmp_path / "green.png")


def test_grid_layout(lr_run):
    pipe = load_pipeline(lr_run[0])
    out = pipe(rand_images(2, 8, 8), rand_images(2, 64, 9))
    grid = pipe.grid(out)
    assert grid.shape == (3, 2 * 64, (N_ITERS + 2) * 64)
    torch.testing.assert_close(grid[:, 64:, :64], out.contour[1])
    torch.testing.assert_close(grid[:, :64, 64:128], out.identity[0])
    torch.testing.assert_close(grid[:, 64:, -64:], out.image[1])


def test_checkpoint_errors(lr_run, tmp_path, monkeypatch):
    """What load_pipeline adds to the export's own checks (tests/experiments/test_exports.py)."""
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pipeline(tmp_path / "nowhere")
    run, _ = lr_run
    other = tmp_path / "mismatch" / "final"
    other.mkdir(parents=True)
    (other / "encoder.safetensors").write_bytes((run / "final" / "encoder.safetensors").read_bytes())
    text = (run / "final" / "config.yaml").read_text().replace("ifm_hidden: 8", "ifm_hidden: 4")
    (other / "config.yaml").write_text(text)
    with pytest.raises(CheckpointError, match="does not match the encoder its config describes"):
        load_pipeline(other.parent)

    import models.weights

    spec = models.weights.REGISTRY["toy_ide"]
    moved = dataclasses.replace(spec, filename="nowhere/encoder.safetensors")
    monkeypatch.setitem(models.weights.REGISTRY, "toy_ide", moved)
    with pytest.raises(models.weights.MissingWeightsError, match="ideface-pretrain-toy encoder"):
        load_pipeline("toy")


def test_encoder_refuses_a_generator_it_was_not_trained_with(lr_run, tmp_path):
    """The export records the generator's fingerprint: the same weights in another file format load, other
    weights are refused with both fingerprints named, and a file without the record loads unchecked."""
    from safetensors.torch import load_file, save_file

    from models.stylegan2 import load_generator, save_generator

    run, model = lr_run
    root = run.parent
    g, latent_avg = load_generator(root / "g.safetensors", 64, style_dim=32, n_mlp=2, channels=CHANNELS)
    save_generator(tmp_path / "same.pt", g, latent_avg)  # rosinality's torch format, same tensors
    with torch.no_grad():
        g.to_rgbs[-1].bias.add_(0.1)
    save_generator(tmp_path / "other.safetensors", g, latent_avg)

    def run_with(generator_file: Path, name: str, metadata: bool = True) -> Path:
        final = tmp_path / name / "final"
        final.mkdir(parents=True)
        source = run / "final" / "encoder.safetensors"
        if metadata:
            (final / "encoder.safetensors").write_bytes(source.read_bytes())
        else:
            save_file(load_file(str(source)), str(final / "encoder.safetensors"))
        config = (run / "final" / "config.yaml").read_text()
        assert str(root / "g.safetensors") in config
        (final / "config.yaml").write_text(config.replace(str(root / "g.safetensors"), str(generator_file)))
        return final.parent

    from experiments.exports import load_run_config
    from experiments.methods import EncoderMethod

    method = SimpleNamespace(cfg=load_run_config(run / "final"))
    for k in range(3):  # the record keeps identical exports byte-identical
        EncoderMethod.export(method, model, tmp_path / f"again{k}")
        assert (tmp_path / f"again{k}" / "encoder.safetensors").read_bytes() == (
            run / "final" / "encoder.safetensors"
        ).read_bytes()

    photo, identity = rand_images(1, 64, 2), rand_images(1, 64, 3)
    expected = load_pipeline(run)(photo, identity).image
    torch.testing.assert_close(load_pipeline(run_with(tmp_path / "same.pt", "same"))(photo, identity).image, expected)
    with pytest.raises(
        CheckpointError,
        match=r"trained through generator weights with fingerprint "
        r"[0-9a-f]{16}, but .*other\.safetensors has [0-9a-f]{16}",
    ):
        load_pipeline(run_with(tmp_path / "other.safetensors", "other"))
    unchecked = load_pipeline(run_with(tmp_path / "other.safetensors", "old_export", metadata=False))
    assert (unchecked(photo, identity).image - expected).abs().max() > 0.05


def test_shipped_toy_encoder_reconstructs_toy_test_faces():
    """load_pipeline("toy") loads the shipped encoder (sha256-checked); on toy test pairs its outputs are
    closer to the real faces than the generator's average image it starts from, and each output is
    matched to its own contour's face (nearest among the batch's 16 faces) far above chance (1/16)."""
    from data.toyfaces.dataset import ToyFaces

    pipe = load_pipeline("toy")
    assert (pipe.modality, pipe.output_size, pipe.n_iters) == ("lr", 32, 5)
    test = ToyFaces("test", "lr", lr_size=pipe.lr_size, input_size=pipe.input_size)
    items = [test[i] for i in range(0, 160, 10)]  # 16 contours, each with its first identity image
    contour = torch.stack([it["contour"] for it in items])
    identity = torch.stack([it["identity"] for it in items])
    target = torch.stack([it["target"] for it in items])
    out = pipe.run_tensors(contour, identity)
    with torch.no_grad():
        average = pipe.model.decoder(
            [pipe.model.latent_avg.expand(1, -1, -1)], input_is_latent=True, randomize_noise=False
        )[0].clamp(-1, 1)
    assert (out.image - target).square().mean() < (average - target).square().mean()
    distances = (out.image[:, None] - target[None]).square().mean((2, 3, 4))  # (output, face)
    matched = (distances.argmin(1) == torch.arange(len(items))).float().mean()
    # 1.0 for the shipped encoder (its 1,200-step predecessor: 0.875; the 64-px world's: 0.6875); chance 1/16
    assert matched >= 0.5, matched


def test_shipped_toy_encoder_follows_the_identity_photo():
    """The paper's point on the toy world: one contour, identity photos of other people, and the outputs
    take the identity photo's person. On cross-identity test pairs the evaluation ArcFace finds most
    outputs closer to the identity photo's person than to the contour's (photos not fed to the model;
    chance is 50%)."""
    from data.toyfaces.dataset import ToyFaces, ToySizes
    from metrics.identity_following import PersonTemplates
    from metrics.idsim import FULL_CROP, ArcFaceEmbedder

    pipe = load_pipeline("toy")
    test = ToyFaces(
        "test",
        "lr",
        lr_size=pipe.lr_size,
        input_size=pipe.input_size,
        pairing="random",
        sizes=ToySizes(test_identities=60),
    )
    rows = [test.manifest.rows[i] for i in range(0, 600, 5)]  # 60 contours x 2 identity photos of others
    items = [test[i] for i in range(0, 600, 5)]
    out = pipe.run_tensors(
        torch.stack([it["contour"] for it in items]), torch.stack([it["identity"] for it in items])
    ).image
    judge = ArcFaceEmbedder.from_registry("toy_eval_arcface_onnx", providers=["CPUExecutionProvider"], crop=FULL_CROP)
    templates = PersonTemplates.from_batches(test.photo_batches(), judge)
    scores = templates.scores(
        judge(out),
        [r.contour for r in rows],
        [r.contour_identity_id for r in rows],
        [r.identity for r in rows],
        [r.identity_id for r in rows],
    )
    assert not any(r.same_identity for r in rows)
    rate = scores["identity_following"].mean()
    assert rate >= 0.8, rate  # 1.0 here, 0.996 on 500 cross-identity pairs (chance 0.5)
