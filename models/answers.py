"""The trivial answers: outputs that need no model, scored with the same metrics as the methods.

A metric can only show what a method adds if it rates these answers far from the method (the guide's
"score the trivial answers first"). Each one bounds a column from one side:

=============  ==============================================================================
copy_target    the ground-truth photo itself: LPIPS 0 and FID near 0 (the floor of both), and
               an identity-following rate near 0 on cross-identity pairs (it shows the contour's
               person, never the identity photo's)
copy_identity  the identity photo itself: identity similarity at its ceiling, following 100% on
               cross pairs, but the contour ignored (LPIPS far off)
copy_contour   the contour drawn as an image (an LR contour is a blurred face): what the contour
               alone carries, with no identity input and no generator
average_face   the generator's average image for every pair: nothing of either input
=============  ==============================================================================
"""

from __future__ import annotations

import torch

from ops.resize import resize_to
from ops.shapes import assert_shape

ANSWERS = ("copy_target", "copy_identity", "copy_contour", "average_face")


def answer(
    name: str,
    contour_rgb: torch.Tensor,
    identity: torch.Tensor,
    target: torch.Tensor,
    average: torch.Tensor,
) -> torch.Tensor:
    """The answer ``name`` (ANSWERS) for a batch -> (B, 3, H, W) in [-1, 1], ``target``'s size.

    contour_rgb: (B, 3, s, s) the contour as an image (a label map or sketch drawn in colour/grey);
    identity: (B, 3, s', s') and target: (B, 3, H, W) photos; average: (1, 3, G, G) the generator's
    average image. Inputs of another size are resized (``ops.resize``'s bicubic, the LR contour's).
    """
    assert_shape(target, (None, 3, None, None), "target")
    b = target.shape[0]
    assert_shape(contour_rgb, (b, 3, None, None), "contour_rgb")
    assert_shape(identity, (b, 3, None, None), "identity")
    assert_shape(average, (1, 3, None, None), "average")
    if name == "copy_target":
        image = target
    elif name == "copy_identity":
        image = identity
    elif name == "copy_contour":
        image = contour_rgb
    elif name == "average_face":
        image = average.expand(b, -1, -1, -1)
    else:
        raise ValueError(f"unknown trivial answer {name!r} (expected one of {', '.join(ANSWERS)})")
    return resize_to(image, tuple(target.shape[-2:])).clamp(-1, 1)
