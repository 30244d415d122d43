r"""Autoregressive generation with a `SequenceTransformer`, one token at a time (Sec. 3.4, Eq. 16-20).

    model = SequenceTransformer(vocab, vocab, causal=True, attention="linear_transformer").eval()
    ids = generate(model, prompt, max_new_tokens=100)                      # (B, P + 100)

    decoder = IncrementalDecoder(model, batch_size=B)                     # the same, step by step
    logits = decoder.prefill(prompt)                                      # (B, num_classes), next-token logits
    logits = decoder.step(next_token)                                     # one token, one position further

Each layer keeps what it needs to continue: a linear attention layer its RNN state (S, z), whose size is
fixed, so every step costs the same; a softmax attention layer (`archzoo.core.FullAttention`) a cache of all
keys and values so far, so step i attends over i keys and costs O(i). The second is the baseline the paper's
generation speed-ups are measured against (Sec. 4.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ...core.attention import FullAttention
from ...core.checks import check_shape
from ...core.embeddings import LearnedPositionalEmbedding, SinusoidalPositionalEmbedding
from ...core.sequence import SequenceTransformer
from ...core.transformer import TransformerBlock
from .attention import LinearAttention


class RecurrentLinearAttention:
    """A `LinearAttention` layer during generation: its state (s_i, z_i) of fixed size (Eq. 16-20)."""

    def __init__(self, attn: LinearAttention, batch_size: int):
        self.attn, self.state = attn, attn.init_state(batch_size)

    def prefill(self, x: Tensor) -> Tensor:                   # (B, N, dim), causal parallel form
        out, self.state = self.attn.prefill(x, self.state)
        return out

    def step(self, x: Tensor) -> Tensor:                      # (B, dim), Eq. 18-20
        out, self.state = self.attn.step(x, self.state)
        return out

    def state_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state)


class KVCacheSoftmaxAttention:
    r"""A softmax `FullAttention` layer during generation: keys and values of every past token, in a buffer of
    `max_len` positions filled as tokens arrive. Step i computes softmax(q_i K_{<=i}^T / \sqrt{d}) V_{<=i}: O(i)."""

    def __init__(self, attn: FullAttention, batch_size: int, max_len: int):
        w = attn.to_k.weight
        self.attn, self.length = attn, 0
        shape = (batch_size, attn.heads, max_len, attn.dim_head)
        self.keys = torch.zeros(shape, device=w.device, dtype=w.dtype)
        self.values = torch.zeros(shape, device=w.device, dtype=w.dtype)

    def _append(self, x: Tensor) -> None:                     # x (B, T, dim)
        t = x.shape[1]
        if self.length + t > self.keys.shape[2]:
            raise ValueError(f"the key-value cache holds {self.keys.shape[2]} positions; "
                             f"cannot add {t} to the {self.length} already there")
        end = self.length + t
        self.keys[:, :, self.length:end] = rearrange(self.attn.to_k(x), "b t (h d) -> b h t d", h=self.attn.heads)
        self.values[:, :, self.length:end] = rearrange(self.attn.to_v(x), "b t (h d) -> b h t d", h=self.attn.heads)
        self.length = end

    def prefill(self, x: Tensor) -> Tensor:                   # (B, N, dim)
        if self.length:
            raise ValueError("prefill starts a sequence; the cache already holds tokens")
        self._append(x)
        return self.attn(x, causal=True)

    def step(self, x: Tensor) -> Tensor:                      # (B, dim)
        self._append(x.unsqueeze(1))
        q = rearrange(self.attn.to_q(x), "b (h d) -> b h 1 d", h=self.attn.heads)
        out = F.scaled_dot_product_attention(q, self.keys[:, :, :self.length], self.values[:, :, :self.length])
        return self.attn.to_out(rearrange(out, "b h 1 d -> b (h d)"))

    def state_bytes(self) -> int:
        return 2 * self.keys[:, :, :self.length].numel() * self.keys.element_size()


def recurrent_layer(attn: nn.Module, batch_size: int, max_len: int):
    """The generation-time form of an attention layer: its RNN state, or a key-value cache for softmax."""
    if isinstance(attn, LinearAttention):
        return RecurrentLinearAttention(attn, batch_size)
    if isinstance(attn, FullAttention):
        return KVCacheSoftmaxAttention(attn, batch_size, max_len)
    raise ValueError(f"incremental decoding supports the linear_transformer and full attentions, "
                     f"got {type(attn).__name__}")


def _block_forward(block: TransformerBlock, attend, h: Tensor) -> Tensor:
    """`TransformerBlock.forward` with its self-attention replaced by `attend` (a prefill or step of that layer)."""
    h = block._residual(h, block.norm1, lambda x: block.drop(attend(x)))
    return block._residual(h, block.norm2, block.ff)


class IncrementalDecoder:
    """Runs a causal `SequenceTransformer` one position at a time, keeping each layer's state between calls.

    `prefill(ids)` reads a prompt (B, P) in one parallel pass, `step(token)` feeds one token (B,); both return
    the logits for the next position (B, num_classes), equal to the last row of `model(ids)` on the whole
    sequence so far. Run it under `torch.no_grad()` with the model in eval mode (`generate` does both).
    """

    def __init__(self, model: SequenceTransformer, batch_size: int, max_len: int | None = None):
        if not isinstance(model, SequenceTransformer):
            raise ValueError(f"IncrementalDecoder needs a SequenceTransformer, got {type(model).__name__}")
        if not (model.causal and model.per_token):
            raise ValueError("generation needs a causal model with per-token outputs "
                             "(SequenceTransformer(..., causal=True, per_token=True))")
        if any(block.cross_attn is not None for block in model.transformer.blocks):
            raise ValueError("incremental decoding of blocks with cross-attention is not supported")
        self.model, self.batch_size = model, batch_size
        self.max_len = min(max_len or model.max_len, model.max_len)
        self.layers = [recurrent_layer(block.attn, batch_size, self.max_len) for block in model.transformer.blocks]
        self.position = 0

    def _embed(self, ids: Tensor) -> Tensor:                  # (B, T) -> (B, T, dim) at the next T positions
        t0, t1 = self.position, self.position + ids.shape[1]
        if t1 > self.max_len:
            raise ValueError(f"the decoder holds {self.max_len} positions; position {t1 - 1} is past the end")
        h, pos = self.model.embed(ids), self.model.pos
        if isinstance(pos, LearnedPositionalEmbedding):
            h = h + pos.weight[t0:t1]
        elif isinstance(pos, SinusoidalPositionalEmbedding):
            h = h + pos.pe[t0:t1].to(h.dtype)
        elif not isinstance(pos, nn.Identity):
            raise ValueError(f"unsupported positional embedding {type(pos).__name__}")
        self.position = t1
        return h

    def _blocks(self, h: Tensor, mode: str) -> Tensor:
        for block, layer in zip(self.model.transformer.blocks, self.layers):
            h = _block_forward(block, getattr(layer, mode), h)
        return self.model.head(self.model.transformer.norm(h))

    def prefill(self, ids: Tensor) -> Tensor:
        check_shape(ids, "B P", name="prompt", dtype="int", B=self.batch_size)
        if self.position:
            raise ValueError("prefill reads the prompt at position 0; this decoder has already started")
        return self._blocks(self._embed(ids), "prefill")[:, -1]          # (B, num_classes)

    def step(self, token: Tensor) -> Tensor:
        check_shape(token, "B", name="token", dtype="int", B=self.batch_size)
        return self._blocks(self._embed(token.unsqueeze(1)).squeeze(1), "step")   # (B, num_classes)

    def state_bytes(self) -> int:
        """Bytes of all layers' states: fixed for linear attention, growing with position for a KV cache."""
        return sum(layer.state_bytes() for layer in self.layers)


@torch.no_grad()
def generate(model: SequenceTransformer, prompt: Tensor, max_new_tokens: int, *, temperature: float = 0.0,
             generator: torch.Generator | None = None) -> Tensor:
    """Continue `prompt` (B, P) by `max_new_tokens` tokens: greedy at temperature 0, else sampled from
    softmax(logits / temperature). The head's classes are the next token's ids. Returns (B, P + max_new_tokens)."""
    b, p = check_shape(prompt, "B P", name="prompt", dtype="int").values()
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if p + max_new_tokens > model.max_len:
        raise ValueError(f"prompt ({p}) + max_new_tokens ({max_new_tokens}) exceeds the model's "
                         f"max_len {model.max_len}")
    if model.num_classes > model.vocab_size:
        raise ValueError(f"the head predicts {model.num_classes} classes but the vocabulary has {model.vocab_size} "
                         "tokens: its outputs are not next tokens")
    was_training = model.training
    model.eval()
    decoder = IncrementalDecoder(model, b, p + max_new_tokens)
    logits, out = decoder.prefill(prompt), [prompt]
    for i in range(max_new_tokens):
        if temperature > 0:
            token = torch.multinomial(F.softmax(logits / temperature, -1), 1, generator=generator).squeeze(1)
        else:
            token = logits.argmax(-1)
        out.append(token.unsqueeze(1))
        if i < max_new_tokens - 1:
            logits = decoder.step(token)
    model.train(was_training)
    return torch.cat(out, 1)
