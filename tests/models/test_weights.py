"""The weights registry: names, locations, missing-file messages, sha256 checks, the listing command, and
the weights-file readers' refusals."""

import hashlib
import re
from pathlib import Path

import pytest

from models import weights
from models.weights import (
    REGISTRY,
    MissingWeightsError,
    UnreadableCheckpointError,
    UnsafeCheckpointError,
    WeightsChecksumError,
    WeightSpec,
    expected_path,
    load_state_file,
    load_torch_file,
    resolve,
    resolve_path,
    sha256_of,
    verify,
)

SPEC_NAMES = {
    "stylegan2_ffhq_1024": "stylegan2-ffhq-config-f.pt",
    "ir_se50": "model_ir_se50.pth",
    "arcface_onnx": "w600k_r50.onnx",
    "buffalo_l": "buffalo_l",
    "lpips_alex": "alexnet-owt-7be5be79.pth",
    "fid_inception": "pt_inception-2015-12-05-6726825d.pth",
    "toy_stylegan2": "toy_stylegan2.safetensors",
    "toy_arcface": "toy_arcface.safetensors",
    "toy_arcface_onnx": "toy_arcface.onnx",
    "toy_eval_arcface": "toy_eval_arcface.safetensors",
    "toy_eval_arcface_onnx": "toy_eval_arcface.onnx",
}


def test_registry_names_and_files():
    assert {n: REGISTRY[n].filename for n in SPEC_NAMES} == SPEC_NAMES
    for s in REGISTRY.values():
        assert s.source and s.description and s.location in ("root", "repo", "torch_hub")


def test_locations(tmp_path, monkeypatch):
    monkeypatch.setenv("IDEFACE_WEIGHTS", str(tmp_path / "env"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert expected_path("ir_se50") == tmp_path / "env" / "model_ir_se50.pth"
    assert expected_path("ir_se50", root=tmp_path / "arg") == tmp_path / "arg" / "model_ir_se50.pth"
    assert expected_path("lpips_alex") == tmp_path / "th" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert expected_path("toy_stylegan2") == weights.PRETRAINED_DIR / "toy_stylegan2.safetensors"
    monkeypatch.delenv("IDEFACE_WEIGHTS")
    assert expected_path("ir_se50").parent.parts[-3:] == (".cache", "ideface", "weights")


def test_missing_file_message_names_file_path_and_source(tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        resolve("stylegan2_ffhq_1024", root=tmp_path)
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert "stylegan2-ffhq-config-f.pt" in msg and str(tmp_path / "stylegan2-ffhq-config-f.pt") in msg
    assert "rosinality" in msg and "ideface-convert" in msg
    with pytest.raises(MissingWeightsError, match="buffalo_l.zip"):
        resolve("buffalo_l", root=tmp_path)
    with pytest.raises(KeyError, match="registered"):
        resolve("no_such_weights")


def test_missing_toy_weights_say_how_to_make_them(monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(MissingWeightsError, match="ideface-pretrain-toy"):
        resolve("toy_eval_arcface_onnx")


def test_present_files_and_folders_resolve(tmp_path):
    (tmp_path / "model_ir_se50.pth").write_bytes(b"weights")
    assert resolve("ir_se50", root=tmp_path) == tmp_path / "model_ir_se50.pth"
    (tmp_path / "buffalo_l").mkdir()
    assert resolve("buffalo_l", root=tmp_path) == tmp_path / "buffalo_l"
    assert resolve_path("ir_se50", tmp_path) == tmp_path / "model_ir_se50.pth"
    assert resolve_path(tmp_path / "model_ir_se50.pth") == tmp_path / "model_ir_se50.pth"
    with pytest.raises(MissingWeightsError, match="neither an existing path"):
        resolve_path(tmp_path / "nothing.pt")


def test_sha256_full_and_prefix_checked_streamed(tmp_path, monkeypatch):
    data = bytes(range(256)) * 5000
    digest = hashlib.sha256(data).hexdigest()
    assert sha256_of_bytes(tmp_path, data, chunk=1000) == digest
    for name, sha in [("full", digest), ("prefix", digest[:8])]:
        monkeypatch.setitem(REGISTRY, name, WeightSpec(name, f"{name}.bin", sha, "the test", "test file"))
        (tmp_path / f"{name}.bin").write_bytes(data)
        assert verify(name, root=tmp_path) is True
        assert resolve(name, root=tmp_path) == tmp_path / f"{name}.bin"
        (tmp_path / f"{name}.bin").write_bytes(data + b"x")  # a changed file (size) is hashed again
        with pytest.raises(WeightsChecksumError, match=f"{name}.bin"):
            resolve(name, root=tmp_path)
    monkeypatch.setitem(REGISTRY, "unknown", WeightSpec("unknown", "u.bin", None, "the test", "no hash"))
    (tmp_path / "u.bin").write_bytes(b"")
    assert verify("unknown", root=tmp_path) is None


def sha256_of_bytes(tmp_path, data, chunk):
    (tmp_path / "blob").write_bytes(data)
    return sha256_of(tmp_path / "blob", chunk=chunk)


def test_listing_command(tmp_path, capsys):
    (tmp_path / "w600k_r50.onnx").write_bytes(b"x")
    from experiments.weights import main

    assert main(["--root", str(tmp_path), "--verify"]) == 0
    out = capsys.readouterr().out
    for name in SPEC_NAMES:
        assert name in out
    line = next(line for line in out.splitlines() if line.startswith("arcface_onnx"))
    assert "present" in line and "MISSING" not in line
    assert "MISSING" in next(line for line in out.splitlines() if line.startswith("ir_se50"))


class _Gadget:  # a class the weights-only unpickler must refuse (a pickle would run its module's code)
    pass


def test_load_torch_file_admits_namespaces_and_refuses_code_with_the_file_name(tmp_path):
    import argparse

    import torch

    path = tmp_path / "train.pt"
    torch.save({"g_ema": {"w": torch.ones(2)}, "args": argparse.Namespace(size=64, lr=0.002)}, path)
    loaded = load_torch_file(path)
    assert loaded["args"].size == 64 and torch.equal(loaded["g_ema"]["w"], torch.ones(2))
    bad = tmp_path / "gadget.pt"
    torch.save({"w": torch.ones(2), "extra": _Gadget()}, bad)
    with pytest.raises(UnsafeCheckpointError, match=r"gadget\.pt: not loaded: it holds a .*_Gadget object") as err:
        load_torch_file(bad)
    assert "weights_only=False" in str(err.value) and "--trust-pickle" in str(err.value)


@pytest.mark.parametrize(
    "name, damage",
    [
        ("cut.safetensors", lambda data: data[:1000]),
        ("empty.safetensors", lambda data: b""),
        ("cut.pt", lambda data: data[:5000]),
        ("tail.pt", lambda data: data[:-100]),
        ("empty.pt", lambda data: b""),
        ("text.pt", lambda data: b"hello"),
        ("noise.pt", lambda data: b"\x80\x02" + bytes(range(103, 140))),
    ],
)
def test_damaged_files_are_refused_with_the_file_name(tmp_path, name, damage):
    import torch
    from safetensors.torch import save_file

    state = {"w": torch.randn(64, 64), "b": torch.zeros(64)}
    whole = tmp_path / ("whole" + Path(name).suffix)
    if whole.suffix == ".safetensors":
        save_file(state, str(whole))
    else:
        torch.save(state, whole)
    assert torch.equal(load_state_file(whole)["w"], state["w"])
    path = tmp_path / name
    path.write_bytes(damage(whole.read_bytes()))
    kind = "safetensors" if path.suffix == ".safetensors" else "torch"
    with pytest.raises(UnreadableCheckpointError, match=rf"{re.escape(name)}: not a readable {kind} file"):
        load_state_file(path)
    with pytest.raises(FileNotFoundError):
        load_state_file(tmp_path / ("absent" + path.suffix))
