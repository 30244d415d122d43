"""Bad token ids for every registered sequence preset: each ends in a ValueError that names what was expected and
what was received, or is handled correctly (an empty batch gives an empty output), never an IndexError or NaN.

The sequence presets are found from the models themselves (`takes_token_ids`), so a new one is checked without
being listed here. Presets too large to build in a test at their defaults get the same layers, smaller (`SMALL`);
a sequence preset above `MAX_PARAMS` without an entry fails `test_every_sequence_preset_is_small_enough_to_check`.
"""

import fnmatch
import re
from functools import cache

import pytest
import torch
from torch import nn

from archzoo import create_model, list_models

SMALL = {                   # the presets' own layers, narrower and shallower (pattern -> overrides)
    "linformer_base_*": dict(dim=32, depth=1, heads=2, dim_head=16, vocab_size=100),
    "longformer_*": dict(dim=32, depth=1, heads=2, vocab_size=100, max_len=128, window=8),
    "reformer_enwik8": dict(dim=32, depth=1, heads=2, dim_head=16, ff_dim=64, axial_dims=(16, 16)),
    "terraformer_c4_medium": dict(dim=32, depth=1, heads=2, dim_head=16, ff_dim=128, vocab_size=100,
                                  attention_kwargs=dict(modules=2), axial_dims=(16, 16)),
    "synthesizer_*": dict(dim=32, depth=1, heads=2, dim_head=16, vocab_size=100, max_len=64),
    "switch_base_8": dict(dim=32, depth=2, heads=2, dim_head=16, vocab_size=100, max_len=128, num_experts=2),
}
MAX_PARAMS = 1_000_000
LENGTH = 64                 # a valid length for every preset (a multiple of the Reformers' chunk lengths)
TOKEN_TASKS = {"token", "tokens", "sequence", "text", "language", "lm", "mlm", "clm"}


def token_embedding(model: nn.Module) -> nn.Embedding | None:
    """The model's first `nn.Embedding`, its input embedding in every model of the course."""
    return next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)


def takes_token_ids(model: nn.Module) -> bool:
    """Whether `model` reads token ids (B, N): from its declared `pretrained_cfg["task"]` where it has one, else
    from its modules (an input `nn.Embedding`)."""
    task = (getattr(model, "pretrained_cfg", None) or {}).get("task")
    if task is None:
        return token_embedding(model) is not None
    return bool(set(re.split(r"[^a-z]+", str(task).lower())) & TOKEN_TASKS)


def overrides(name: str) -> dict:
    return next((kw for pattern, kw in SMALL.items() if fnmatch.fnmatch(name, pattern)), {})


@cache
def meta_models() -> dict[str, nn.Module]:
    """Every preset built on the meta device (no memory, no values), with its test overrides."""
    models = {}
    for name in list_models():
        with torch.device("meta"):
            models[name] = create_model(name, **overrides(name))
    return models


SEQUENCE_PRESETS = [name for name, model in meta_models().items() if takes_token_ids(model)]


@cache
def preset(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, **overrides(name)).eval()


def forward(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids)


def valid_ids(model: nn.Module, batch: int = 2, length: int = LENGTH) -> torch.Tensor:
    return torch.randint(token_embedding(model).num_embeddings, (batch, length))


def test_the_sequence_presets_are_found():
    assert {"bigbird_small", "linformer_tiny", "longformer_base", "performer_small", "reformer_tiny",
            "synthesizer_dense_base", "linear_transformer_lm"} <= set(SEQUENCE_PRESETS)


def test_a_declared_task_agrees_with_the_models_input():
    for name, model in meta_models().items():
        if (getattr(model, "pretrained_cfg", None) or {}).get("task") is not None:
            assert takes_token_ids(model) == (token_embedding(model) is not None), name


@pytest.mark.parametrize("name", SEQUENCE_PRESETS)
def test_every_sequence_preset_is_small_enough_to_check(name):
    params = sum(p.numel() for p in meta_models()[name].parameters())
    assert params <= MAX_PARAMS, f"{name} has {params:,} parameters here: give it small overrides in SMALL"


@pytest.mark.parametrize("name", SEQUENCE_PRESETS)
def test_valid_ids_give_finite_outputs_in_train_and_eval_mode(name):
    model = preset(name)
    ids = valid_ids(model)
    try:
        assert torch.isfinite(forward(model.train(), ids)).all()
    finally:
        model.eval()
    assert torch.isfinite(forward(model, ids)).all()


@pytest.mark.parametrize("name", SEQUENCE_PRESETS)
@pytest.mark.parametrize("bad_id, bound", [("vocab_size", "max"), (-3, "min")])
def test_ids_outside_the_vocabulary_raise_a_value_error_naming_them(name, bad_id, bound):
    model = preset(name)
    vocab = token_embedding(model).num_embeddings
    bad_id = vocab if bad_id == "vocab_size" else bad_id
    ids = valid_ids(model)
    ids[1, 5] = bad_id
    with pytest.raises(ValueError, match=rf"vocab_size={vocab}\b.*{bound} id {bad_id}\b"):
        forward(model, ids)


@pytest.mark.parametrize("name", SEQUENCE_PRESETS)
def test_float_ids_raise_a_value_error_naming_the_dtype(name):
    model = preset(name)
    with pytest.raises(ValueError, match="integer token ids.*float32"):
        forward(model, valid_ids(model).float())


@pytest.mark.parametrize("name", SEQUENCE_PRESETS)
def test_empty_sequences_give_an_empty_output_or_a_value_error(name):
    model = preset(name)
    try:
        out = forward(model, valid_ids(model, length=0))
    except ValueError as e:
        assert "(2, 0)" in str(e), f"the message must name the shape received: {e}"
        return
    assert out.dim() == 3 and out.shape[:2] == (2, 0), "only a per-token output can be empty: pooling needs a token"


@pytest.mark.parametrize("name", SEQUENCE_PRESETS)
def test_an_empty_batch_gives_an_empty_output(name):
    model = preset(name)
    assert forward(model, valid_ids(model, batch=0)).shape[0] == 0


@pytest.mark.parametrize("name", SEQUENCE_PRESETS)
def test_a_sequence_over_the_maximum_length_raises_a_value_error_naming_both(name):
    model = preset(name)
    n = model.max_len + 1
    with pytest.raises(ValueError, match=rf"\b{n}\b.*\b{model.max_len}\b"):
        forward(model, valid_ids(model, batch=1, length=n))
