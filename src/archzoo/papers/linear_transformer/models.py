"""A causal language model with linear attention: the family's small `SequenceTransformer` as a preset.

The paper gives no parameter counts; this preset is the model every attention of the course is compared with in
`archzoo bench tasks` (dim 64, depth 2, 4 heads of 16), made causal so that it generates with
`archzoo.papers.linear_transformer.generate`.
"""

from __future__ import annotations

from ...core.sequence import SequenceTransformer
from ...registry import register_model


@register_model(paper="linear_transformer", input_size=(1024,), num_classes=129, task="language-modeling")
def linear_transformer_lm(vocab_size: int = 129, num_classes: int | None = None, max_len: int = 1024, dim: int = 64,
                          depth: int = 2, heads: int = 4, dim_head: int = 16, **kwargs) -> SequenceTransformer:
    """A causal token model (B, N) -> (B, N, num_classes) with linear attention in every layer (Sec. 3.3).

    The default vocabulary (129) is the duplication task's; `num_classes` defaults to `vocab_size` (next-token
    prediction). Other `SequenceTransformer` arguments (`mlp_ratio`, `positional`, `attention_kwargs`, ...) pass
    through.
    """
    return SequenceTransformer(vocab_size, num_classes or vocab_size, dim=dim, depth=depth, heads=heads,
                               dim_head=dim_head, max_len=max_len, attention="linear_transformer", causal=True,
                               per_token=True, **kwargs)
