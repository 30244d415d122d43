import pytest
import torch

from archzoo.core import check_shape
from archzoo.core.checks import as_model_dtype, check_image


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


def test_floating_images_are_cast_to_the_parameters_dtype_and_integer_ones_refused():
    conv = torch.nn.Conv2d(3, 4, 3)
    assert check_image(torch.zeros(2, 3, 8, 8, dtype=torch.float64), conv, C=3).dtype == torch.float32
    assert as_model_dtype(torch.zeros(2, 3, dtype=torch.float16), conv.double()).dtype == torch.float64
    for dtype in (torch.uint8, torch.int64, torch.bool):
        with pytest.raises(ValueError, match=f"expected a floating-point tensor .*got {dtype}.*x.float\\(\\) / 255"):
            check_image(torch.zeros(2, 3, 8, 8, dtype=dtype), conv)


def test_image_sides_outside_the_limits_name_the_limits():
    conv = torch.nn.Conv2d(1, 1, 3)
    check_image(torch.zeros(1, 1, 5, 9), conv, min_size=5, max_size=9)
    with pytest.raises(ValueError, match="input: expected images of at least 5x5 pixels, got 4x9"):
        check_image(torch.zeros(1, 1, 4, 9), conv, min_size=5)
    with pytest.raises(ValueError, match="x: expected images of between 5x5 and 9x9 pixels, got 5x10"):
        check_image(torch.zeros(1, 1, 5, 10), conv, name="x", min_size=5, max_size=9)
