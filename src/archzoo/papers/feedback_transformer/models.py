"""The preset of the state-tracking claim: a two-layer Feedback Transformer over a small vocabulary.

The paper's algorithmic-task models are small (Sec. 4.1, Appendix); this preset is the size the claim trains (dim 32,
depth 2, 4 heads of 8), and its parameter count (asserted in the tests) is counted from this code.
"""

from __future__ import annotations

from ...registry import register_model
from .feedback import FeedbackTransformer


@register_model(paper="feedback_transformer", input_size=(64,), num_classes=2, task="language-modeling")
def feedback_transformer_tiny(vocab_size: int = 3, num_classes: int = 2, max_len: int = 64, dim: int = 32,
                              depth: int = 2, heads: int = 4, dim_head: int = 8, **kwargs) -> FeedbackTransformer:
    """Token ids (B, N) -> per-token logits (B, N, num_classes), N <= max_len; `mlp_ratio` passes through."""
    return FeedbackTransformer(vocab_size, num_classes, dim=dim, depth=depth, heads=heads, dim_head=dim_head,
                               max_len=max_len, **kwargs)
