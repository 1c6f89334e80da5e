"""fp16 state dicts and the printed sha256s of exported files."""

import hashlib

import torch
from torch import nn

from experiments.toy_pretraining.export import fp16_state, print_hashes


def test_fp16_state_halves_floats_and_keeps_counters():
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    state = fp16_state(net)
    assert state.keys() == net.state_dict().keys()
    assert state["0.weight"].dtype == torch.float16 and state["1.num_batches_tracked"].dtype == torch.int64
    assert torch.equal(state["0.weight"], net[0].weight.detach().half())
    given = fp16_state({"w": torch.ones(4, 4).t()})  # a transposed view: made contiguous for safetensors
    assert given["w"].dtype == torch.float16 and given["w"].is_contiguous()


def test_print_hashes_prints_and_returns_each_files_sha256(tmp_path, capsys):
    path = tmp_path / "net.safetensors"
    path.write_bytes(b"toy weights")
    digest = hashlib.sha256(b"toy weights").hexdigest()
    assert print_hashes({"net": path}) == {"net.safetensors": digest}
    assert capsys.readouterr().out == f"sha256 {digest}  {path}  (11 bytes)\n"
