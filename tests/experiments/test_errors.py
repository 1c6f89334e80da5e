"""The bad-input corpus: every case of issue 25 built here, through the entry points' own main(), with its
expected outcome (one line on stderr and exit code 2, or correct handling); and the handler's rule that an
internal error keeps its traceback."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from experiments.config import load_config
from experiments.errors import check_output_dir, check_output_file, one_line_errors
from tests.conftest import subprocess_env

from .conftest import tiny_overrides

# Root writes through mode 0o555 by CAP_DAC_OVERRIDE. A child started with that capability (and
# DAC_READ_SEARCH) dropped from its bounding set keeps uid 0 but obeys folder modes, os.access included,
# so the read-only cases run as root too (CI's fresh machines run as root).
DROP_DAC_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


def read_only_folder(tmp_path: Path) -> tuple[Path, list[str]]:
    """A 0o555 folder and the command prefix under which this user cannot write into it; skips (saying why)
    where no such prefix exists here."""
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    prefix = DROP_DAC_OVERRIDE if os.geteuid() == 0 else []
    if prefix and shutil.which(prefix[0]) is None:
        pytest.skip("running as root, and util-linux's setpriv (to drop CAP_DAC_OVERRIDE) is not installed")
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import os, sys; sys.exit(os.access(sys.argv[1], os.W_OK))", str(folder)],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot make {folder} read-only for this user: {(probe.stderr or 'still writable').strip()}")
    return folder, prefix


def main_in_child(prefix: list[str], module: str, args: list[str]) -> subprocess.CompletedProcess:
    """``module.main(args)`` in a fresh interpreter of this tree, started under ``prefix``."""
    code = f"import sys; from {module} import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [*prefix, sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        env=subprocess_env({"OMP_NUM_THREADS": "1"}),
        timeout=300,
    )


def refused_in_one_line(proc: subprocess.CompletedProcess) -> str:
    """The single stderr line of a child refused with exit code 2."""
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(err) == 1 and err[0].startswith("error: "), (proc.returncode, err)
    return err[0]


class Payload:
    """Any class of the test module: pickling an instance writes a GLOBAL the weights-only reader refuses."""


def unsafe_torch_file(path: Path) -> Path:
    torch.save({"state": Payload()}, path)
    return path


def truncated_copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return dst


def one_error_line(capsys) -> str:
    """The single stderr line of a refused command."""
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture(scope="module")
def trained(tiny_nets, tmp_path_factory):
    """A finished tiny run (2 steps, checkpoints at 2): (run folder, its tokens)."""
    from experiments.train import train

    out = tmp_path_factory.mktemp("corpus")
    tokens = tiny_overrides(tiny_nets, out, **{"train.max_steps": 2, "wandb.mode": "disabled"})
    return train(load_config(tokens)), tokens


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "out" / run_dir.name
    shutil.copytree(run_dir, dst, ignore=shutil.ignore_patterns(".lock", "eval"))
    return dst


# ---- the handler ---------------------------------------------------------------------------------------
def test_internal_errors_keep_their_traceback(capsys):
    def bug():
        raise ValueError("an internal invariant broke")

    with pytest.raises(ValueError, match="internal invariant"):
        one_line_errors(bug)

    def os_bug():
        raise OSError("no file named")

    with pytest.raises(OSError):
        one_line_errors(os_bug)

    def user_path():
        open("/nonexistent-dir/x.txt")

    assert one_line_errors(user_path) == 2
    assert one_error_line(capsys) == "error: /nonexistent-dir/x.txt: No such file or directory"


def test_output_path_checks(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "file" / "run", "output_dir")
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        check_output_file(tmp_path, "--out")
    assert check_output_dir(tmp_path / "new" / "deeper", "output_dir") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing


# ---- run.py ----------------------------------------------------------------------------------------------
def run_main(tokens, **extra):
    from experiments.run import main

    return main([*tokens, *(f"{k}={v}" for k, v in extra.items())])


@pytest.mark.parametrize(
    "key,value,needle",
    [
        ("train.max_steps", "0", "'train.max_steps': 0; it must be >= 1"),
        ("train.ckpt_every", "0", "'train.ckpt_every': 0"),
        ("train.lr", "-1", "'train.lr': -1.0; it must be > 0"),
        ("data.input_size", "48", "power of two"),
    ],
)
def test_run_bad_config_values(tiny_nets, tmp_path, capsys, key, value, needle):
    assert run_main(tiny_overrides(tiny_nets, tmp_path), **{key: value}) == 2
    assert needle in one_error_line(capsys)


def test_run_output_dir_that_is_a_file_is_refused_before_any_work(tiny_nets, tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    assert run_main(tiny_overrides(tiny_nets, tmp_path / "taken")) == 2
    assert "is a file, not a folder" in one_error_line(capsys)


def test_run_read_only_output_dir(tiny_nets, tmp_path):
    folder, prefix = read_only_folder(tmp_path)
    proc = main_in_child(prefix, "experiments.run", tiny_overrides(tiny_nets, folder))
    assert "is not writable" in refused_in_one_line(proc)
    assert not any(folder.iterdir())


@pytest.mark.parametrize("key", ["generator.weights", "model.identity_weights", "loss.id_network"])
@pytest.mark.parametrize("damage", ["unsafe", "truncated"])
def test_run_unsafe_or_unreadable_weights(tiny_nets, tmp_path, capsys, key, damage):
    source = tiny_nets["g"] if key == "generator.weights" else tiny_nets["arc"]
    path = (
        unsafe_torch_file(tmp_path / "w.pt")
        if damage == "unsafe"
        else truncated_copy(source, tmp_path / "w.safetensors")
    )
    assert run_main(tiny_overrides(tiny_nets, tmp_path / "out"), **{key: path}) == 2
    line = one_error_line(capsys)
    assert str(path) in line
    assert ("Payload object" in line) if damage == "unsafe" else ("not a readable safetensors file" in line)


def test_run_generator_of_other_shapes_names_the_file(tiny_nets, tmp_path, capsys):
    assert run_main(tiny_overrides(tiny_nets, tmp_path), **{"generator.style_dim": 16}) == 2
    line = one_error_line(capsys)
    assert str(tiny_nets["g"]) in line and "size mismatch" in line and "style_dim=16" in line


@pytest.mark.parametrize("key", ["model.identity_weights", "loss.id_network"])
def test_run_arcface_weights_that_are_another_network_name_the_file(tiny_nets, tmp_path, capsys, key):
    assert run_main(tiny_overrides(tiny_nets, tmp_path), **{key: tiny_nets["g"]}) == 2  # the generator's file
    line = one_error_line(capsys)
    assert str(tiny_nets["g"]) in line and "IR-SE" in line


def test_run_relaunch_of_a_finished_run_is_refused(trained, capsys):
    run_dir, tokens = trained
    before = (run_dir / "final" / "encoder.safetensors").read_bytes()
    assert run_main(tokens, **{"train.lr": "3e-4"}) == 2  # a changed lr lands in the same folder
    line = one_error_line(capsys)
    assert "already holds a finished run" in line and "resume=latest" in line and "output_dir=" in line
    assert (run_dir / "final" / "encoder.safetensors").read_bytes() == before


def test_run_resume_latest_without_a_checkpoint_says_so(tiny_nets, tmp_path, capsys):
    assert run_main(tiny_overrides(tiny_nets, tmp_path), resume="latest") == 2
    line = one_error_line(capsys)
    assert "no complete checkpoint" in line and "resume=auto" in line
    assert not list(tmp_path.glob("*/config.yaml"))  # nothing started


@pytest.mark.parametrize(
    "piece,needle",
    [
        ("optimizer.bin", "the optimiser state (optimizer.bin) is unreadable"),
        ("random_states_0.pkl", "the random generator states (random_states_0.pkl) is unreadable"),
        ("model.safetensors", "the model weights (model.safetensors) is unreadable"),
    ],
)
@pytest.mark.parametrize("damage", ["unsafe", "truncated"])
def test_run_resume_with_a_damaged_piece_names_it(trained, tmp_path, capsys, piece, needle, damage):
    run_dir, tokens = trained
    copy = copy_run(run_dir, tmp_path)
    path = copy / "checkpoints" / "step_2" / piece
    if damage == "unsafe":
        unsafe_torch_file(path)
    else:
        truncated_copy(path, path)
    out_token = next(t for t in tokens if t.startswith("output_dir="))
    assert run_main([t for t in tokens if t != out_token], output_dir=copy.parent, resume="latest") == 2
    line = one_error_line(capsys)
    assert needle in line and "resume from another checkpoint" in line


# ---- evaluate.py -----------------------------------------------------------------------------------------
def eval_main(run_dir, *extra):
    from experiments.evaluate import main

    return main([f"checkpoint={run_dir}", "eval.max_pairs=4", *extra])


def test_evaluate_truncated_encoder(trained, tmp_path, capsys):
    copy = copy_run(trained[0], tmp_path)
    encoder = copy / "final" / "encoder.safetensors"
    truncated_copy(encoder, encoder)
    assert eval_main(copy) == 2
    assert f"{encoder}: not a readable safetensors file" in one_error_line(capsys)


def test_evaluate_encoder_of_other_shapes_gives_the_detail(trained, tmp_path, capsys):
    copy = copy_run(trained[0], tmp_path)
    cfg = copy / "final" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("ifm_hidden: 8", "ifm_hidden: 6"))
    assert eval_main(copy) == 2
    line = one_error_line(capsys)
    assert "does not match the encoder its config describes" in line and "size mismatch for" in line


def test_evaluate_missing_checkpoint(tmp_path, capsys):
    assert eval_main(tmp_path / "nothing-here") == 2
    assert "not found; pass a finished run folder" in one_error_line(capsys)


@pytest.fixture(scope="module")
def manifest(trained):
    """The tiny run's test manifest, written by a first (good) evaluation."""
    from experiments.evaluate import main

    assert main([f"checkpoint={trained[0]}", "eval.max_pairs=4"]) == 0
    (path,) = (trained[0].parent / "cache").rglob("*_random_*.csv")
    return path


@pytest.mark.parametrize(
    "case", ["garbage", "empty", "header_only", "binary", "identity_swapped", "rows_cut", "ids_changed"]
)
def test_evaluate_refuses_a_damaged_or_edited_manifest(trained, manifest, capsys, case):
    good = manifest.read_bytes()
    lines = good.decode().splitlines(keepends=True)
    row = lines[1].split(",")
    damaged = {
        "garbage": b"this is not, a manifest\n1,2\n",
        "empty": b"",
        "header_only": lines[0].encode(),
        "binary": bytes(range(256)) * 4,
        # another person's identity photo in the first pair
        "identity_swapped": "".join(
            [lines[0], ",".join([*row[:3], lines[-1].split(",")[3], *row[4:]]), *lines[2:]]
        ).encode(),
        "rows_cut": "".join(lines[:-2]).encode(),
        "ids_changed": good.replace(b",1\n", b",0\n", 1) if b",1\n" in good else good.replace(b",0\n", b",1\n", 1),
    }[case]
    assert damaged != good
    try:
        manifest.write_bytes(damaged)
        capsys.readouterr()
        assert eval_main(trained[0]) == 2
        line = one_error_line(capsys)
        assert str(manifest) in line and "delete it to rebuild it" in line
    finally:
        manifest.write_bytes(good)


# ---- generate ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photos(trained, tmp_path_factory):
    """A toy identity photo, a toy LR contour and a CelebAMask-HQ-style label map (all PNG)."""
    from data.images import save_image, save_label_map

    root = tmp_path_factory.mktemp("photos")
    test_set = load_config([f"output_dir={trained[0].parent}"])  # the toy world's own renderer
    from experiments.world import build_dataset

    item = build_dataset(test_set, "test")[0]
    save_image(item["target"], root / "identity.png")
    save_image(item["target"], root / "contour.png")
    labels = torch.zeros(64, 64, dtype=torch.long)
    labels[16:48, 16:48] = 1
    labels[24:30, 20:28] = 4
    save_label_map(labels, root / "mask.png")
    return root


def gen_args(run_dir, photos, *extra, out=None) -> list[str]:
    return [
        "--checkpoint",
        str(run_dir),
        "--identity",
        str(photos / "identity.png"),
        "--contour",
        str(photos / "contour.png"),
        "--aligned",
        "--device",
        "cpu",
        "--out",
        str(out),
        *extra,
    ]


def gen_main(run_dir, photos, *extra, out=None):
    from experiments.generate import main

    return main(gen_args(run_dir, photos, *extra, out=out))


def test_generate_good_pair_then_each_bad_input(trained, photos, tmp_path, capsys):
    run_dir = trained[0]
    assert gen_main(run_dir, photos, out=tmp_path / "ok.png") == 0 and (tmp_path / "ok.png").is_file()
    capsys.readouterr()
    # --out a folder
    (tmp_path / "folder.png").mkdir()
    assert gen_main(run_dir, photos, out=tmp_path / "folder.png") == 2
    assert "is a folder; give a file name" in one_error_line(capsys)
    # a folder passed as the identity photo
    from experiments.generate import main

    base = ["--checkpoint", str(run_dir), "--aligned", "--device", "cpu", "--out", str(tmp_path / "x.png")]
    assert main([*base, "--identity", str(tmp_path), "--contour", str(photos / "contour.png")]) == 2
    assert f"{tmp_path}: a folder, not an image file" in one_error_line(capsys)
    # a label map given to an LR checkpoint
    assert main([*base, "--identity", str(photos / "identity.png"), "--contour", str(photos / "mask.png")]) == 2
    assert "a label map" in one_error_line(capsys)
    assert not (tmp_path / "x.png").exists()


def test_generate_truncated_encoder(trained, photos, tmp_path, capsys):
    copy = copy_run(trained[0], tmp_path)
    truncated_copy(copy / "final" / "encoder.safetensors", copy / "final" / "encoder.safetensors")
    assert gen_main(copy, photos, out=tmp_path / "o.png") == 2
    assert "not a readable safetensors file" in one_error_line(capsys)


# ---- convert.py, data.prepare -------------------------------------------------------------------------------
def test_convert_unsafe_source_and_folder_dest(tmp_path, capsys):
    from experiments.convert import main

    src = unsafe_torch_file(tmp_path / "g.pt")
    with pytest.raises(SystemExit) as info:
        main([str(src), str(tmp_path / "out.pt")])
    assert info.value.code == 2 and "Payload object" in one_error_line(capsys)
    with pytest.raises(SystemExit) as info:
        main([str(src), str(tmp_path)])
    assert info.value.code == 2 and "is a folder" in one_error_line(capsys)


def test_prepare_names_every_missing_item(tmp_path, capsys):
    from experiments.prepare import main

    assert main(["celebahq", "--root", str(tmp_path), "--no-progress"]) == 2
    line = one_error_line(capsys)
    for name in (
        "CelebAMask-HQ-mask-anno",
        "CelebA-HQ-img",
        "CelebA-HQ-to-CelebA-mapping.txt",
        "identity_CelebA.txt",
        "list_eval_partition.txt",
    ):
        assert f"missing {name}" in line, name


# ---- image files -------------------------------------------------------------------------------------------
def test_large_photo_is_read_without_a_float_copy(tmp_path):
    """An 8-bit photo is aligned from its uint8 pixels: the same values as the float path, and no array of
    4 bytes per channel at full size (the 12,000 px photo of the issue cost 5.6 GB)."""
    import tracemalloc

    from data.align import load_rgb
    from data.images import load_image, to_uint8

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(small).save(tmp_path / "small.png")
    assert np.array_equal(load_rgb(tmp_path / "small.png"), to_uint8(load_image(tmp_path / "small.png")))
    side = 2000
    Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(tmp_path / "big.png")
    tracemalloc.start()
    rgb = load_rgb(tmp_path / "big.png")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rgb.shape == (side, side, 3) and peak < 2.5 * side * side * 3  # float32 alone would be 4x


# ---- the final export --------------------------------------------------------------------------------------
def test_final_export_is_swapped_in_whole(trained, tmp_path):
    """An export that fails midway leaves the previous final/ as it was; one that succeeds replaces it whole
    and leaves no partial or old folder behind."""
    from experiments.exports import load_run_config
    from experiments.methods import build_method
    from experiments.train import export_final

    copy = copy_run(trained[0], tmp_path)
    before = {p.name: p.read_bytes() for p in (copy / "final").iterdir()}
    method = build_method(load_run_config(copy / "final"), torch.device("cpu"))
    (copy / "final.partial").write_text("a file where the export's folder goes")
    with pytest.raises(OSError):
        export_final(method, method.model, copy)
    assert {p.name: p.read_bytes() for p in (copy / "final").iterdir()} == before
    (copy / "final.partial").unlink()
    export_final(method, method.model, copy)
    assert sorted(p.name for p in copy.iterdir() if p.name.startswith("final")) == ["final"]
    assert (copy / "final" / "encoder.safetensors").read_bytes() != before["encoder.safetensors"]


def test_generate_read_only_out(trained, photos, tmp_path):
    folder, prefix = read_only_folder(tmp_path)
    proc = main_in_child(prefix, "experiments.generate", gen_args(trained[0], photos, out=folder / "o.png"))
    assert "is not writable" in refused_in_one_line(proc)
    assert not any(folder.iterdir())
