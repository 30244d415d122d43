"""Longformer in `archzoo bench attention` / `archzoo bench tasks`, beside Hugging Face's `LongformerSelfAttention`.

The benchmark setting: window w = 256 (128 tokens on each side) and one global token, the first, as for a
classification [CLS] token (the paper's pretrained models use w = 512). The reference is `transformers`'
`LongformerSelfAttention` (the authors' "sliding chunks" code) followed by the output projection that
Hugging Face keeps outside it (`LongformerSelfOutput.dense`), with the same window and global token.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...engine.bench import register_attention_bench

BENCH_WINDOW = 256

# our projection -> Hugging Face's LongformerSelfAttention projection
HF_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_q_global": "query_global",
            "to_k_global": "key_global", "to_v_global": "value_global"}


def hf_attention_mask(mask: Tensor | None, global_mask: Tensor) -> Tensor:
    """Our (padding mask, global mask) as the float mask Hugging Face's layer takes: -10000 padding, 0 local,
    +10000 global (`LongformerModel.forward` makes it from its 0/1/2 `attention_mask`)."""
    am = torch.zeros(global_mask.shape, dtype=torch.float32, device=global_mask.device)
    am = am.masked_fill(global_mask, 10000.0)
    return am if mask is None else am.masked_fill(~mask, -10000.0)


class HFLongformerAttention(nn.Module):
    """Hugging Face's `LongformerSelfAttention` + output projection, called like our attention.

    `forward(x, mask=None, global_mask=None)`; without a `global_mask` the positions `global_tokens` are
    global. Hugging Face needs N to be a multiple of the window (its `LongformerModel` pads to one).
    """

    def __init__(self, dim: int, heads: int, dim_head: int, window: int, global_tokens=(0,)):
        super().__init__()
        from transformers import LongformerConfig
        from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

        if heads * dim_head != dim:
            raise ValueError(f"Hugging Face's Longformer needs dim = heads * dim_head, got {dim} != {heads} * "
                             f"{dim_head}")
        cfg = LongformerConfig(hidden_size=dim, num_attention_heads=heads, attention_window=[window],
                               attention_probs_dropout_prob=0.0)
        self.self_attn = LongformerSelfAttention(cfg, layer_id=0)
        self.dense = nn.Linear(dim, dim)                      # LongformerSelfOutput.dense, our to_out
        self.global_tokens = tuple(global_tokens)

    def forward(self, x: Tensor, mask: Tensor | None = None, global_mask: Tensor | None = None) -> Tensor:
        if global_mask is None:
            global_mask = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
            global_mask[:, list(self.global_tokens)] = True
        am = hf_attention_mask(mask, global_mask if mask is None else global_mask & mask)
        out = self.self_attn(x, attention_mask=am, is_index_masked=am < 0, is_index_global_attn=am > 0,
                             is_global_attn=bool((am > 0).any()))[0]
        return self.dense(out)


def copy_weights_from_hf(ours: nn.Module, ref: HFLongformerAttention) -> None:
    """Load the reference's projections into our `LongformerAttention` (built with `qkv_bias=True`)."""
    with torch.no_grad():
        for name, hf_name in HF_NAMES.items():
            getattr(ours, name).load_state_dict(getattr(ref.self_attn, hf_name).state_dict())
        ours.to_out.load_state_dict(ref.dense.state_dict())


def bench_kwargs(n: int) -> dict:
    return dict(window=BENCH_WINDOW, global_tokens=(0,))


def make_reference(n: int, dim: int, heads: int, dim_head: int) -> nn.Module:
    return HFLongformerAttention(dim, heads, dim_head, window=BENCH_WINDOW, global_tokens=(0,))


register_attention_bench("longformer", kwargs=bench_kwargs, reference=make_reference,
                         ref_name="transformers LongformerSelfAttention", linear=True)
