import pytest
import torch

from archzoo.core import check_shape


def test_check_shape_returns_the_bound_dims():
    assert check_shape(torch.zeros(2, 3, 8, 6), "B C H W", C=3) == {"B": 2, "C": 3, "H": 8, "W": 6}


def test_ellipsis_matches_zero_or_more_dims():
    assert check_shape(torch.zeros(2, 3), "B C ...") == {"B": 2, "C": 3}
    assert check_shape(torch.zeros(2, 3, 4, 5, 6), "B C ... W") == {"B": 2, "C": 3, "W": 6}


def test_wrong_known_dim_names_expected_and_received_shape():
    with pytest.raises(ValueError) as e:
        check_shape(torch.zeros(2, 4, 32, 32), "B C H W", C=3)
    assert str(e.value) == "input: expected shape (B, C=3, H, W), got (2, 4, 32, 32)"


def test_wrong_rank_is_an_error_also_with_ellipsis():
    with pytest.raises(ValueError, match=r"x: expected shape \(B, N, D\), got \(2, 3\)"):
        check_shape(torch.zeros(2, 3), "B N D", name="x")
    with pytest.raises(ValueError, match="expected shape"):
        check_shape(torch.zeros(2), "B C ...")


def test_a_name_used_twice_must_bind_one_size():
    assert check_shape(torch.zeros(2, 4, 4), "B N N") == {"B": 2, "N": 4}
    with pytest.raises(ValueError, match="got \\(2, 4, 5\\)"):
        check_shape(torch.zeros(2, 4, 5), "B N N")


def test_known_none_leaves_a_dim_free():
    assert check_shape(torch.zeros(2, 5), "B N", N=None)["N"] == 5


def test_non_tensor_input_names_its_type():
    with pytest.raises(ValueError, match="expected a tensor of shape \\(B, N\\), got list"):
        check_shape([[1.0]], "B N")


def test_dtype_check():
    check_shape(torch.zeros(2, 3), "B N", dtype="float")
    check_shape(torch.zeros(2, 3, dtype=torch.long), "B N", dtype="int")
    with pytest.raises(ValueError, match="mask: expected a bool tensor, got torch.float32"):
        check_shape(torch.zeros(2, 3), "B N", name="mask", dtype="bool")
    with pytest.raises(ValueError, match="torch.float64"):
        check_shape(torch.zeros(2, 3, dtype=torch.long), "B N", dtype=torch.float64)
