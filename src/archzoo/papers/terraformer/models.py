r"""The Terraformer language model (Jaszczur et al. 2021, arXiv:2111.12763) and its presets.

Terraformer is the Reformer's reversible stack (`archzoo.papers.reformer`: `ReversibleBlock`, LSH attention if
asked) with the sparse layers of Sec. 3 inside it:

    x1 = x2 = embed(ids) + E_pos,   y1 = x1 + F(x2),  y2 = x2 + G(y1)  (per layer),   logits = W LayerNorm([y1; y2])
    F(x) = Attention(LayerNorm(x))       sparse QKV attention (Sec. 3.2), or any registered attention ("reformer")
    G(x) = SparseFFN(LayerNorm(x))       sparse feed-forward (Sec. 3.1), or the dense ReLU FFN (`sparse_ff=False`)

`TerraformerLM` is `ReformerLM` with these parts, plus cached single-token decoding (`decode_step`, `generate`)
that runs each sparse FFN on its chosen units only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ...core.checks import check_shape
from ...registry import register_model
from ..reformer.models import ReformerLM
from .decoding import DecodeState, LayerCache, attention_step
from .sparse_ff import SparseFeedForward


class TerraformerLM(ReformerLM):
    """Token ids (B, N) -> logits (B, N, num_classes): Reformer's reversible LM with sparse layers (module docstring).

    - `attention`: a registered attention name, default "terraformer_sparse_qkv" (Sec. 3.2, `attention_kwargs`
      `modules`, `length_kernel`); "full" for dense Q, K, V; "reformer" for LSH attention.
    - `sparse_ff=True`: every feed-forward is a `SparseFeedForward` with blocks of `block_size` units, a controller of
      rank `lowrank` (default dim / block_size), Gumbel `temperature` and `quant_prob` (Sec. 3.1); `sparse_ff=False`
      is the dense ReLU FFN of the same `ff_dim`.
    - Everything else is `ReformerLM`'s (`reversible`, `ff_chunks`, axial positions, `causal`).
    - `decode_step(ids, state)` / `generate(prompt, steps)`: cached decoding, one token at a time, in eval mode.
    """

    def __init__(self, vocab_size: int = 256, num_classes: int | None = None, *, dim: int = 512,
                 ff_dim: int | None = None, attention: str | Callable[..., nn.Module] = "terraformer_sparse_qkv",
                 sparse_ff: bool = True, block_size: int = 32, lowrank: int | None = None, temperature: float = 0.1,
                 quant_prob: float = 0.3, dropout: float = 0.0, **kwargs):
        feedforward = None
        if sparse_ff:
            def feedforward(d: int, d_ff: int) -> SparseFeedForward:
                return SparseFeedForward(d, d_ff, block_size, lowrank, temperature, quant_prob, dropout)
        super().__init__(vocab_size, num_classes, dim=dim, ff_dim=ff_dim, attention=attention, dropout=dropout,
                         feedforward=feedforward, **kwargs)

    def init_decoding(self) -> DecodeState:
        """An empty cache: the next token is the first."""
        return DecodeState([LayerCache() for _ in self.layers.blocks])

    @torch.no_grad()
    def decode_step(self, ids: Tensor, state: DecodeState) -> Tensor:
        """The logits (B, num_classes) after token `ids` (B,) at position `state.position`, which then advances.

        Equal to `forward` on the whole prefix at its last position (the same layers, in eval mode: the sparse
        FFN reads its chosen units only, `SparseFeedForward.decode`)."""
        if self.training:
            raise ValueError("decode_step runs the inference path: call model.eval() first")
        check_shape(ids, "B", name="ids")
        t = state.position
        if t >= self.max_len:
            raise ValueError(f"ids: position {t} is past max_len={self.max_len} of the position embedding")
        h = self.embed(ids[:, None])                                                  # (B, 1, d)
        h = h + self.pos(h.new_zeros(1, t + 1, self.dim))[:, t:]                      # E_pos[t]
        x1 = x2 = h
        for block, cache in zip(self.layers.blocks, state.layers):
            x1 = x1 + block.f.drop(attention_step(block.f.attn, block.f.norm(x2), cache))     # y1 = x1 + F(x2)
            norm, ff = block.g
            x2 = x2 + (ff.decode(norm(x1)) if isinstance(ff, SparseFeedForward) else ff(norm(x1)))   # y2 = x2 + G(y1)
        state.position = t + 1
        return self.forward_head(self.norm(torch.cat([x1, x2], dim=-1)))[:, 0]      # (B, num_classes)

    @torch.no_grad()
    def generate(self, prompt: Tensor, steps: int) -> Tensor:
        """Greedy continuation of `prompt` (B, P), P >= 1, by `steps` tokens with cached decoding: (B, P + steps)."""
        check_shape(prompt, "B P", name="prompt")
        if prompt.shape[1] < 1:
            raise ValueError(f"prompt: expected at least one token, got shape {tuple(prompt.shape)}")
        state, out = self.init_decoding(), [prompt]
        for i in range(prompt.shape[1]):
            logits = self.decode_step(prompt[:, i], state)
        for _ in range(steps):
            out.append(logits.argmax(-1, keepdim=True))
            logits = self.decode_step(out[-1][:, 0], state)
        return torch.cat(out, dim=1)


KINDS = ("dense", "sparse_ff", "sparse")


def comparison_lm(vocab_size: int, kind: str, *, dim: int, depth: int, heads: int, ff_dim: int, block_size: int,
                  max_len: int) -> TerraformerLM:
    """The models the claim and the benchmark compare, identical but for the layers of Sec. 3: `kind` "dense" (ReLU
    FFN, dense Q, K, V), "sparse_ff" (sparse FFN with blocks of `block_size`, dense Q, K, V) or "sparse" (sparse
    FFN and sparse QKV with one module per head), all with the same d_ff."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return TerraformerLM(vocab_size, dim=dim, depth=depth, heads=heads, dim_head=dim // heads, ff_dim=ff_dim,
                         max_len=max_len, sparse_ff=kind != "dense", block_size=block_size,
                         attention="terraformer_sparse_qkv" if kind == "sparse" else "full")


@register_model(paper="terraformer", kwargs_to=TerraformerLM, input_size=(32768,), num_classes=32000,
                task="language-modeling")
def terraformer_c4_medium(**overrides) -> TerraformerLM:
    """The decoder stack of the authors' `terraformer_c4_medium.gin` (trax): d_model 1024, d_ff 6144, 16 heads of 64,
    24 reversible layers, sparse FFN with blocks of 64 (ff_sparsity 64), sparse QKV with 16 modules and a length
    kernel of 3, a 32,000-token vocabulary, 32,768 positions (axial, 128 x 256)."""
    cfg = dict(vocab_size=32000, dim=1024, depth=24, heads=16, dim_head=64, ff_dim=6144, block_size=64,
               attention_kwargs=dict(modules=16, length_kernel=3), axial_shape=(128, 256), axial_dims=(512, 512))
    return TerraformerLM(**{**cfg, **overrides})


@register_model(paper="terraformer", kwargs_to=TerraformerLM, input_size=(1024,), num_classes=256,
                task="language-modeling")
def terraformer_tiny(**overrides) -> TerraformerLM:
    """A CPU-sized Terraformer (the layers of the claim's sparse model): d 64, 2 layers of 4 heads of 16, d_ff 512 in
    blocks of 32, sparse QKV with 4 modules, 1,024 learned positions, bytes."""
    cfg = dict(vocab_size=256, dim=64, depth=2, heads=4, dim_head=16, ff_dim=512, block_size=32, max_len=1024,
               attention_kwargs=dict(modules=4, length_kernel=3))
    return TerraformerLM(**{**cfg, **overrides})
