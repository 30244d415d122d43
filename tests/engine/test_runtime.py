import random

import numpy as np
import pytest
import torch

from archzoo.engine import claims
from archzoo.engine.runtime import num_threads, process_device, resolve_device, seed_everything


def draws():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_seed_everything_repeats_python_numpy_and_torch_draws():
    seed_everything(11)
    first = draws()
    seed_everything(11)
    assert draws() == first
    seed_everything(12)
    assert draws() != first


def test_devices_resolve_and_a_bad_name_raises_a_value_error_naming_it():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="'tpu'"):
        resolve_device("tpu")
    assert process_device("cpu") == torch.device("cpu")           # one process: no group, the device as given


def test_num_threads_restores_the_previous_number_even_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), num_threads(before + 1):
        assert torch.get_num_threads() == before + 1
        raise RuntimeError
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="0"), num_threads(0):
        pass


def test_the_claim_runner_still_exports_the_runtime_helpers():
    assert claims.seed_everything is seed_everything and claims.resolve_device is resolve_device
