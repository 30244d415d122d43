"""Synthesizer encoders: the paper's Transformer-base widths with each synthesizing function (Tay et al. 2020,
arXiv:2005.00743, Sec. 4: d = 512, d_ff = 2048, 8 heads, 6 layers), as `SequenceTransformer`s.

    model = create_model("synthesizer_random_base", vocab_size=32000, num_classes=2)   # ids (B, N) -> (B, 2)

Every attention layer is a `SynthesizerAttention` with l = `max_len` (512 by default). Positions are sinusoidal
(Vaswani et al. 2017), so the parameters are the token embedding, the layers and the head; `causal=True` makes
a decoder-only language model (with `per_token=True`). Overrides go to `synthesizer_encoder`: the
`SequenceTransformer`'s sizes, and the synthesizer's own options (`fixed_random`, `k`, `factors`,
`mixture_weights`, `learn_mixture`) to its attention.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...core.sequence import SequenceTransformer
from ...registry import register_model


def synthesizer_encoder(synthesizer: str, *, vocab_size: int = 32000, num_classes: int = 2, dim: int = 512,
                        depth: int = 6, heads: int = 8, dim_head: int = 64, mlp_ratio: float = 4.0, max_len: int = 512,
                        causal: bool = False, per_token: bool = False, positional: str = "sinusoidal",
                        dropout: float = 0.0, fixed_random: bool = False, k: int = 8,
                        factors: Sequence[int] | None = None, mixture_weights: Sequence[float] | None = None,
                        learn_mixture: bool = True) -> SequenceTransformer:
    """A `SequenceTransformer` whose every layer synthesizes its attention with `synthesizer` (l = max_len); the
    last five options go to `SynthesizerAttention` (with its defaults)."""
    options = dict(fixed_random=fixed_random, k=k, factors=factors, mixture_weights=mixture_weights,
                   learn_mixture=learn_mixture)
    return SequenceTransformer(vocab_size, num_classes, dim=dim, depth=depth, heads=heads, dim_head=dim_head,
                               mlp_ratio=mlp_ratio, max_len=max_len, attention="synthesizer",
                               attention_kwargs=dict(seq_len=max_len, synthesizer=synthesizer, **options),
                               causal=causal, per_token=per_token, positional=positional, dropout=dropout)


# Every preset classifies sequences of up to 512 tokens into 2 classes by default; its overrides go to
# `synthesizer_encoder`.
SYNTHESIZER = dict(paper="synthesizer", kwargs_to=synthesizer_encoder, input_size=(512,), num_classes=2,
                   task="sequence-classification")


@register_model(**SYNTHESIZER)
def synthesizer_dense_base(**overrides) -> SequenceTransformer:
    """Dense Synthesizer (Sec. 3.1, Eq. 1-2): each token predicts its attention row with a two-layer MLP."""
    return synthesizer_encoder("dense", **overrides)


@register_model(**SYNTHESIZER)
def synthesizer_random_base(**overrides) -> SequenceTransformer:
    """Random Synthesizer (Sec. 3.1): a trained l x l alignment per head, the same for every input."""
    return synthesizer_encoder("random", **overrides)


@register_model(**SYNTHESIZER)
def synthesizer_fixed_random_base(**overrides) -> SequenceTransformer:
    """Fixed Random Synthesizer (Sec. 3.1): a random l x l alignment per head that is never trained."""
    return synthesizer_encoder("random", **{"fixed_random": True, **overrides})


@register_model(**SYNTHESIZER)
def synthesizer_factorized_dense_base(**overrides) -> SequenceTransformer:
    """Factorized Dense Synthesizer (Sec. 3.1): C = H_A(A) * H_B(B), a b = l (16 x 32 at l = 512)."""
    return synthesizer_encoder("factorized_dense", **overrides)


@register_model(**SYNTHESIZER)
def synthesizer_factorized_random_base(**overrides) -> SequenceTransformer:
    """Factorized Random Synthesizer (Sec. 3.1): R = R_1 R_2^T of rank k = 8."""
    return synthesizer_encoder("factorized_random", **overrides)


@register_model(**SYNTHESIZER)
def synthesizer_dense_vanilla_base(**overrides) -> SequenceTransformer:
    """Mixture Dense + Vanilla (Sec. 3.1, Mixture of Synthesizers): softmax(a_1 F(X) + a_2 Q K^T / sqrt(d_h)) G(X)."""
    return synthesizer_encoder("dense+vanilla", **overrides)


@register_model(**SYNTHESIZER)
def synthesizer_random_vanilla_base(**overrides) -> SequenceTransformer:
    """Mixture Random + Vanilla (Sec. 3.1, Mixture of Synthesizers): softmax(a_1 R + a_2 Q K^T / sqrt(d_h)) G(X)."""
    return synthesizer_encoder("random+vanilla", **overrides)


@register_model(**SYNTHESIZER)
def synthesizer_vanilla_base(**overrides) -> SequenceTransformer:
    """The paper's baseline in the same code: dot-product attention (equal to `FullAttention`)."""
    return synthesizer_encoder("vanilla", **overrides)
