import pytest
import torch

from ops.shapes import assert_shape


def test_ints_must_match_and_none_matches_anything():
    x = torch.zeros(2, 3, 8, 8)
    assert_shape(x, (None, 3, None, None))
    assert_shape(x, (2, 3, 8, 8), "images")
    with pytest.raises(ValueError, match=r"^images must have shape \(\*, 1, \*, \*\), got \(2, 3, 8, 8\)$"):
        assert_shape(x, (None, 1, None, None), "images")


def test_the_number_of_dims_is_part_of_the_contract():
    with pytest.raises(ValueError, match=r"must have shape \(\*, \*, \*, \*\), got \(3, 8, 8\)"):
        assert_shape(torch.zeros(3, 8, 8), (None,) * 4)
    with pytest.raises(ValueError, match=r"got \(2, 3, 8, 8, 1\)"):
        assert_shape(torch.zeros(2, 3, 8, 8, 1), (None, 3, None, None))
