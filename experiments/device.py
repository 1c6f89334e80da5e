"""The torch device a command runs on: one rule behind every script's ``--device``."""

from __future__ import annotations

import torch

# the --dtype choices of the commands that run the pipeline (generate, demo): torch dtype names
DTYPES = ("float32", "bfloat16", "float16")


def resolve_device(name: str | None = "auto") -> torch.device:
    """``None`` or ``"auto"`` -> ``cuda`` when torch sees a GPU, else ``cpu``; otherwise the named
    device (``cpu``, ``cuda``, ``cuda:1`` ...), which must exist on this machine.

    Raises ValueError with a one-line message for a name torch does not know or a GPU it cannot see,
    so that a mistyped ``--device`` stops before any work instead of failing at the first tensor.
    """
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name}: not a torch device ({err}); use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {name}: this torch sees no CUDA device (use --device cpu)")
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0 .. cuda:{count - 1}")
    return device
