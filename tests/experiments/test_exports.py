"""A trained run's export as inference reads it: the folder, its config, the encoder tensors, the fingerprint."""

import pytest
import torch
from safetensors.torch import save_file

from experiments.config import load_config, to_yaml
from experiments.exports import CheckpointError, find_final, load_run_config, read_encoder_state, recorded_generator


def export(folder, tensors, metadata=None, config=True):
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "encoder.safetensors"), metadata=metadata)
    if config:
        (folder / "config.yaml").write_text(to_yaml(load_config([])))
    return folder


def test_find_final_takes_a_run_folder_its_final_folder_or_a_file_in_it(tmp_path):
    final = export(tmp_path / "run" / "final", {"encoder.w": torch.zeros(1)})
    for given in (tmp_path / "run", final, final / "encoder.safetensors"):
        assert find_final(given) == final


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: p / "nowhere", "does not exist"),
        (lambda p: (p / "empty_run").mkdir() or p / "empty_run", "no final/encoder.safetensors"),
        (lambda p: torch.save({"state_dict": {}}, p / "psp.pt") or p / "psp.pt", "no identity input"),
        (lambda p: export(p / "half" / "final", {"encoder.w": torch.zeros(1)}, config=False).parent, "no final/"),
    ],
)
def test_find_final_says_what_is_missing_in_one_line(tmp_path, make, needle):
    with pytest.raises(CheckpointError, match=needle) as info:
        find_final(make(tmp_path))
    assert "\n" not in str(info.value)


def test_read_encoder_state_strips_the_prefix_and_refuses_other_tensors(tmp_path):
    w, avg = torch.randn(2, 3), torch.randn(5)
    state, latent_avg = read_encoder_state(
        export(tmp_path / "a", {"encoder.w": w, "latent_avg": avg}) / "encoder.safetensors"
    )
    assert state.keys() == {"w"} and torch.equal(state["w"], w) and torch.equal(latent_avg, avg)
    assert read_encoder_state(export(tmp_path / "b", {"encoder.w": w}) / "encoder.safetensors")[1] is None
    stray = export(tmp_path / "c", {"encoder.w": w, "decoder.x": w.clone()}) / "encoder.safetensors"
    with pytest.raises(CheckpointError, match=r"c/encoder.safetensors: expected 'encoder.\*' .* got \['decoder.x'\]"):
        read_encoder_state(stray)
    with pytest.raises(CheckpointError, match="got no encoder tensors"):
        read_encoder_state(export(tmp_path / "d", {"latent_avg": avg}) / "encoder.safetensors")


def test_recorded_generator_and_a_damaged_file(tmp_path):
    tensors = {"encoder.w": torch.zeros(1)}
    assert recorded_generator(export(tmp_path / "a", tensors, {"generator": "abc"}) / "encoder.safetensors") == "abc"
    assert recorded_generator(export(tmp_path / "b", tensors) / "encoder.safetensors") is None
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="bad.safetensors"):
        recorded_generator(tmp_path / "bad.safetensors")


@pytest.mark.parametrize(
    "text, needle",
    [("train: [unclosed\n", "config.yaml: "), ("train:\n  lr: -1\n", "'train.lr': -1.0; it must be > 0")],
)
def test_load_run_config_names_the_file_of_a_bad_config(tmp_path, text, needle):
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(CheckpointError, match=needle) as info:
        load_run_config(tmp_path)
    assert str(tmp_path / "config.yaml") in str(info.value) and "\n" not in str(info.value)
