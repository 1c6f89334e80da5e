"""The generate CLI on a tiny toy-world run built in the test: outputs, folder mode, grid, bad inputs."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from data.images import save_image, to_uint8
from experiments.pipeline import load_pipeline
from tests.conftest import subprocess_env
from tests.experiments.test_pipeline import N_ITERS, make_tiny_run

insightface = pytest.importorskip("insightface")
TOM = os.path.join(os.path.dirname(insightface.__file__), "data", "images", "Tom_Hanks_54745.png")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("generate"))[0]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """ids/id0.png, ids/id1.png (aligned 64 px faces stand-ins) and contours/c0..c2.png (8 px LR images)."""
    root = tmp_path_factory.mktemp("inputs")
    g = torch.Generator().manual_seed(0)
    for k in range(2):
        save_image(torch.rand(3, 64, 64, generator=g) * 2 - 1, root / "ids" / f"id{k}.png")
    for k in range(3):
        save_image(torch.rand(3, 8, 8, generator=g) * 2 - 1, root / "contours" / f"c{k}.png")
    return root


def cli(capsys, *argv):
    from experiments.generate import main

    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def one_contour(run, ids, inputs) -> list:
    """The options of a command over the identity folder ``ids`` and the test's first contour."""
    return ["--checkpoint", run, "--identity-dir", ids, "--contour", inputs / "contours" / "c0.png"]


def folder_mode(run, inputs) -> list:
    """The options of a folder-mode command over the test's identity and contour folders."""
    return ["--checkpoint", run, "--identity-dir", inputs / "ids", "--contour-dir", inputs / "contours"]


def test_single_pair_matches_api_and_writes_steps_and_grid(run, inputs, tmp_path, capsys):
    ident, contour = inputs / "ids" / "id0.png", inputs / "contours" / "c1.png"
    rc, out, err = cli(
        capsys,
        "--checkpoint",
        run,
        "--identity",
        ident,
        "--contour",
        contour,
        "--aligned",
        "--out",
        tmp_path / "out.png",
        "--steps-out",
        tmp_path / "steps",
        "--grid",
        tmp_path / "g.png",
    )
    assert rc == 0 and "wrote" in out, err
    api = load_pipeline(run)(contour, ident, aligned=True)
    np.testing.assert_array_equal(png(tmp_path / "out.png"), to_uint8(api.image[0]))
    steps = sorted(p.name for p in (tmp_path / "steps").iterdir())
    assert steps == [f"step_{t}.png" for t in range(1, N_ITERS + 1)]
    np.testing.assert_array_equal(png(tmp_path / "steps" / f"step_{N_ITERS}.png"), png(tmp_path / "out.png"))
    assert png(tmp_path / "g.png").shape == (64, (N_ITERS + 2) * 64, 3)

    rc, _, _ = cli(
        capsys,
        "--checkpoint",
        run / "final",
        "--identity",
        ident,
        "--contour",
        contour,
        "--aligned",
        "--out",
        tmp_path / "big.png",
        "--size",
        96,
    )
    assert rc == 0 and png(tmp_path / "big.png").shape == (96, 96, 3)


def test_seed_makes_noise_reproducible(run, inputs, tmp_path, capsys):
    common = [
        "--checkpoint",
        run,
        "--identity",
        inputs / "ids" / "id1.png",
        "--contour",
        inputs / "contours" / "c0.png",
        "--aligned",
    ]
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        assert cli(capsys, *common, "--seed", seed, "--out", tmp_path / f"{name}.png")[0] == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert not np.array_equal(png(tmp_path / "a.png"), png(tmp_path / "c.png"))


def test_folder_mode_all_by_all_and_manifest(run, inputs, tmp_path, capsys):
    rc, out, err = cli(
        capsys,
        *folder_mode(run, inputs),
        "--aligned",
        "--out",
        tmp_path / "all",
        "--batch-size",
        4,
        "--grid",
        tmp_path / "grid.png",
    )
    assert rc == 0 and "(6 images)" in out and "generating" in err  # the progress bar
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(
        f"c{c}__id{i}.png" for c in range(3) for i in range(2)
    )
    assert png(tmp_path / "grid.png").shape == (6 * 64, (N_ITERS + 2) * 64, 3)

    manifest = tmp_path / "pairs.csv"
    manifest.write_text("contour,identity,same_identity\nc0.png,id1,0\nc2,id0.png,1\n")
    rc, _, err = cli(
        capsys,
        *folder_mode(run, inputs),
        "--pairs",
        manifest,
        "--aligned",
        "--out",
        tmp_path / "listed",
    )
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "listed").iterdir()) == ["c0__id1.png", "c2__id0.png"]
    # Batching does not change an output: same pair, same image as in the all-by-all run.
    np.testing.assert_array_equal(png(tmp_path / "listed" / "c0__id1.png"), png(tmp_path / "all" / "c0__id1.png"))


def test_make_lr_aligns_a_photo(run, tmp_path, capsys):
    rc, out, err = cli(
        capsys,
        "--checkpoint",
        run,
        "--identity",
        TOM,
        "--contour",
        TOM,
        "--make-lr",
        8,
        "--detector",
        "cascade",
        "--out",
        tmp_path / "o.png",
    )
    assert rc == 0, err
    assert png(tmp_path / "o.png").shape == (64, 64, 3)


def test_skip_bad_keeps_the_good_files(run, inputs, tmp_path, capsys):
    ids = tmp_path / "ids"
    ids.mkdir()
    (ids / "good.png").write_bytes((inputs / "ids" / "id0.png").read_bytes())
    (ids / "broken.png").write_bytes(b"")
    rc, _, err = cli(
        capsys,
        *one_contour(run, ids, inputs),
        "--aligned",
        "--out",
        tmp_path / "out",
        "--skip-bad",
    )
    assert rc == 0 and "skipped:" in err and "broken.png" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["c0__good.png"]


def test_real_photos_with_dlib_one_without_a_face(run, inputs, tmp_path, capsys):
    """Folder mode on real photos: the astronaut is aligned by dlib (named in the log and in the PNG),
    the coffee cup (no face) is listed and skipped."""
    from skimage import data

    from models import dlibface

    if not dlibface.available():
        pytest.skip(f"dlib not installed ({dlibface.INSTALL})")
    ids = tmp_path / "ids"
    ids.mkdir()
    Image.fromarray(data.astronaut()).save(ids / "astronaut.jpg", quality=95)
    Image.fromarray(data.coffee()).save(ids / "coffee.png")
    rc, out, err = cli(
        capsys,
        *one_contour(run, ids, inputs),
        "--out",
        tmp_path / "out",
        "--skip-bad",
    )
    assert rc == 0, err
    skipped = [ln for ln in err.splitlines() if ln.startswith("skipped:")]
    assert len(skipped) == 1 and "coffee.png: no face found (dlib detector)" in skipped[0]
    assert "identity photos aligned by dlib (dlib HOG detector + 68 landmarks" in out and "): 1" in out
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["c0__astronaut.png"]
    meta = Image.open(tmp_path / "out" / "c0__astronaut.png").text
    assert meta["ideface.aligner"] == "dlib" and meta["ideface.identity"] == "astronaut.jpg"


def _bad_cases(run, inputs, tmp):
    ident, contour = inputs / "ids" / "id0.png", inputs / "contours" / "c0.png"
    (tmp / "notes.png").write_text("not an image")
    (tmp / "empty.png").write_bytes(b"")
    ramp = np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (120, 1))
    Image.fromarray(ramp).save(tmp / "ramp.png")
    (tmp / "pairs.csv").write_text("contour,identity\nc9.png,id0.png\n")
    base = ["--checkpoint", run, "--out", tmp / "o.png"]
    return {
        "non-image identity": (
            base + ["--identity", tmp / "notes.png", "--contour", contour, "--aligned"],
            "notes.png: not a recognised image",
        ),
        "empty contour": (
            base + ["--identity", ident, "--contour", tmp / "empty.png", "--aligned"],
            "empty.png: empty file",
        ),
        "missing identity": (base + ["--identity", tmp / "nope.png", "--contour", contour], "image file not found"),
        "no face": (
            base + ["--identity", tmp / "ramp.png", "--contour", contour, "--detector", "cascade"],
            "ramp.png: no face found",
        ),
        "missing checkpoint": (
            ["--checkpoint", tmp / "no_run", "--out", tmp / "o.png", "--identity", ident, "--contour", contour],
            "does not exist",
        ),
        "wrong modality": (
            base + ["--identity", ident, "--contour", contour, "--modality", "sketch"],
            "trained on 'lr' contours",
        ),
        "unknown pair": (
            [*folder_mode(run, inputs), "--pairs", tmp / "pairs.csv", "--out", tmp / "d"],
            "line 2: no contour file 'c9.png'",
        ),
        "output not an image": (
            ["--checkpoint", run, "--identity", ident, "--contour", contour, "--out", tmp / "out_dir"],
            "use an image file name",
        ),
        "bad make-lr": (base + ["--identity", ident, "--contour", contour, "--make-lr", 0], "positive size"),
        "bad device": (
            base + ["--identity", ident, "--contour", contour, "--aligned", "--device", "gpu0"],
            "--device gpu0: not a torch device",
        ),
    }


CASES = [
    "non-image identity",
    "empty contour",
    "missing identity",
    "no face",
    "missing checkpoint",
    "wrong modality",
    "unknown pair",
    "output not an image",
    "bad make-lr",
    "bad device",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_exit_2(case, run, inputs, tmp_path, capsys):
    argv, phrase = _bad_cases(run, inputs, tmp_path)[case]
    rc, out, err = cli(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert phrase in lines[0]
    assert not (tmp_path / "o.png").exists()


def test_usage_error_is_one_line(capsys):
    from experiments.generate import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", "toy", "--identity", "a.png", "--out", "o.png"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "one of the arguments --contour --contour-dir is required" in err


@pytest.mark.slow
def test_fresh_interpreter_needs_no_training_dependencies(run, inputs, tmp_path):
    """The CLI in a new process: works, and never imports accelerate or wandb."""
    argv = [
        "--checkpoint",
        str(run),
        "--identity",
        str(inputs / "ids" / "id0.png"),
        "--contour",
        str(inputs / "contours" / "c0.png"),
        "--aligned",
        "--out",
        str(tmp_path / "o.png"),
    ]
    code = (
        f"import sys\nfrom experiments.generate import main\nrc = main({argv!r})\n"
        "print('loaded:', sorted(m for m in ('accelerate', 'wandb') if m in sys.modules))\n"
        "sys.exit(rc)\n"
    )
    env = subprocess_env({"OMP_NUM_THREADS": "1"})
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "loaded: []" in proc.stdout and (tmp_path / "o.png").is_file()
