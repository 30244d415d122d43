import pytest
import torch

from archzoo.data import load_image


def test_sample_images_are_channels_first_in_unit_range():
    camera = load_image("camera")
    assert camera.shape == (1, 512, 512) and camera.dtype == torch.float32
    astronaut = load_image("astronaut", size=32)
    assert astronaut.shape == (3, 32, 32) and 0 <= astronaut.min() and astronaut.max() <= 1
    assert load_image("coffee", size=(20, 30)).shape == (3, 20, 30)


def test_unknown_image_lists_the_names():
    with pytest.raises(ValueError, match="camera.*chelsea"):
        load_image("lena")
