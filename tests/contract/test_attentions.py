"""The attention protocol (`archzoo.core.attention`, docs/CONTRIBUTING.md) checked for every registered attention.

Each attention is built as `Transformer(attention=name)` builds it, `(dim, heads, dim_head, **kwargs)`, with the
settings its paper registered for `archzoo bench` at length N (`register_attention_bench`; the defaults where
there are none), in eval mode. Torch's generator is reseeded before every call, so methods that draw inside their
forward (LSH rotations) draw the same in the two calls a test compares.
"""

import inspect
import re

import pytest
import torch

from archzoo import list_attentions
from archzoo.engine.bench import attention_bench_specs
from archzoo.registry import get_attention

DIM, HEADS, DIM_HEAD, N = 16, 2, 8, 16
ATTENTIONS = list_attentions()


def registered_kwargs(name: str) -> dict:
    spec = attention_bench_specs().get(name)
    return {} if spec is None else (spec.task_kwargs or spec.kwargs)(N)


def build(name: str, dtype: torch.dtype = torch.float32, kwargs: dict | None = None) -> torch.nn.Module:
    kwargs = registered_kwargs(name) if kwargs is None else kwargs
    torch.manual_seed(0)
    return get_attention(name)(DIM, heads=HEADS, dim_head=DIM_HEAD, **kwargs).to(dtype).eval()


def run(attn: torch.nn.Module, x: torch.Tensor, **kwargs) -> torch.Tensor:
    torch.manual_seed(1)
    with torch.no_grad():
        return attn(x, **kwargs)


def supports_causal(attn: torch.nn.Module) -> bool:
    """Whether `attn` has a causal form; one without must say so in a ValueError (checked in the causal test)."""
    try:
        run(attn, torch.randn(1, N, DIM, dtype=attn.to_out.weight.dtype), causal=True)
    except ValueError:
        return False
    return True


def modes(attn: torch.nn.Module) -> list[bool]:
    return [False, True] if supports_causal(attn) else [False]


def test_every_attention_of_a_paper_is_checked():
    assert {"full", "bigbird", "linformer", "longformer", "performer", "reformer", "synthesizer"} <= set(ATTENTIONS)


@pytest.mark.parametrize("name", ATTENTIONS)
def test_builds_on_the_meta_device_with_its_defaults(name):
    params = inspect.signature(get_attention(name)).parameters.values()
    required = [p.name for p in params if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    kwargs = {k: registered_kwargs(name)[k] for k in required if k != "dim"}     # e.g. Linformer's seq_len
    with torch.device("meta"):                 # as `archzoo models` counts parameters: no memory, no values
        attn = build(name, kwargs=kwargs)
    assert all(t.is_meta for t in [*attn.parameters(), *attn.buffers()])


@pytest.mark.parametrize("n", [N, 1, 7])
@pytest.mark.parametrize("name", ATTENTIONS)
def test_output_has_the_input_shape_or_the_supported_lengths_are_named(name, n):
    attn = build(name)
    for causal in modes(attn):
        try:
            out = run(attn, torch.randn(2, n, DIM), causal=causal)
        except ValueError as e:
            assert n != N, f"{name} must work at its registered length {N}: {e}"
            assert "length" in str(e) and re.search(rf"\b{n}\b", str(e)), f"the message must name length {n}: {e}"
            continue
        assert out.shape == (2, n, DIM) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ATTENTIONS)
def test_an_empty_sequence_gives_an_empty_output_or_a_value_error(name):
    attn = build(name)
    for causal in modes(attn):
        try:
            out = run(attn, torch.randn(2, 0, DIM), mask=torch.ones(2, 0, dtype=torch.bool), causal=causal)
        except ValueError as e:
            assert "0" in str(e), f"the message must name the length 0: {e}"
            continue
        assert out.shape == (2, 0, DIM)


@pytest.mark.parametrize("name", ATTENTIONS)
def test_an_empty_batch_gives_an_empty_output(name):
    attn = build(name)
    for causal in modes(attn):
        assert run(attn, torch.randn(0, N, DIM), causal=causal).shape == (0, N, DIM)
        assert run(attn, torch.randn(0, N, DIM), mask=torch.ones(0, N, dtype=torch.bool),
                   causal=causal).shape == (0, N, DIM)


@pytest.mark.parametrize("name", ATTENTIONS)
def test_padded_keys_do_not_change_the_outputs_at_real_tokens(name):
    attn = build(name, torch.float64)
    mask = torch.ones(2, N, dtype=torch.bool)
    mask[0, -5:] = False                                     # trailing padding
    mask[1, [3, 9]] = False                                  # holes
    x = torch.randn(2, N, DIM, dtype=torch.float64)
    other = torch.where(mask[..., None], x, 10 * torch.randn_like(x))
    for causal in modes(attn):
        try:
            out = run(attn, x, mask=mask, causal=causal)
        except ValueError as e:
            assert "mask" in str(e), f"an attention without padding masks must say so: {e}"
            continue
        torch.testing.assert_close(run(attn, other, mask=mask, causal=causal)[mask], out[mask])


@pytest.mark.parametrize("name", ATTENTIONS)
def test_causal_output_at_i_does_not_change_with_the_tokens_after_i(name):
    attn, i = build(name, torch.float64), 6
    x = torch.randn(2, N, DIM, dtype=torch.float64)
    later = x.clone()
    later[:, i + 1:] = 10 * torch.randn(2, N - i - 1, DIM, dtype=torch.float64)
    if not supports_causal(attn):
        with pytest.raises(ValueError, match="causal"):
            run(attn, x, causal=True)
        return
    # LSH attention (reformer) at its registered length holds one chunk per hashing round; with several chunks, a
    # later token's bucket can move an earlier key out of a query's chunk window (see `LSHAttention`)
    torch.testing.assert_close(run(attn, later, causal=True)[:, :i + 1], run(attn, x, causal=True)[:, :i + 1])


@pytest.mark.parametrize("name", ATTENTIONS)
def test_float64_input_computes_as_float32_input(name):
    attn, x = build(name), torch.randn(2, N, DIM)
    for causal in modes(attn):
        out = run(attn, x, causal=causal)
        torch.testing.assert_close(run(attn, x.double(), causal=causal).to(out.dtype), out)


@pytest.mark.parametrize("name", ATTENTIONS)
def test_integer_input_raises_a_value_error_naming_the_dtype(name):
    with pytest.raises(ValueError, match="int64"):
        run(build(name), torch.ones(2, N, DIM, dtype=torch.long))
