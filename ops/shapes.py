"""Shape contracts at public forwards (as NVlabs' ``misc.assert_shape``): one call states what a tensor
must look like, and a mismatch stops with one line naming the tensor, the contract and what came."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def assert_shape(tensor: torch.Tensor, shape: Sequence[int | None], name: str = "tensor") -> None:
    """Raise ValueError unless ``tensor`` has ``len(shape)`` dims and each int of ``shape`` equals its size
    (None accepts any size), e.g. ``assert_shape(images, (None, 3, None, None), "images")``."""
    got = tuple(tensor.shape)
    if len(got) != len(shape) or any(want is not None and int(want) != size for want, size in zip(shape, got)):
        contract = ", ".join("*" if want is None else str(int(want)) for want in shape)
        raise ValueError(f"{name} must have shape ({contract}), got {got}")
