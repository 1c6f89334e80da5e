import pytest
import torch

from experiments.device import resolve_device


def test_auto_picks_cuda_only_when_torch_sees_a_gpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected


def test_named_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="--device gpu0: not a torch device"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(ValueError, match="sees no CUDA device"):
        resolve_device("cuda")


@pytest.mark.cuda
def test_cuda_index_past_the_last_gpu_is_refused():
    count = torch.cuda.device_count()
    assert resolve_device(f"cuda:{count - 1}") == torch.device(f"cuda:{count - 1}")
    with pytest.raises(ValueError, match=f"has {count} CUDA device"):
        resolve_device(f"cuda:{count}")
