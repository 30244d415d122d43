"""The hopfield presets: a sequence Transformer whose attention is the Hopfield layer, and a HopfieldPooling
multiple-instance classifier (our configurations for CPU-sized tasks; the paper's models are described in its
appendix per data set, not as one canonical network).

    archzoo train hopfield_small --data listops --data-set length=512
"""

from __future__ import annotations

from ...core.sequence import SequenceTransformer
from ...registry import register_model
from .mil import MILClassifier


@register_model(paper="hopfield", input_size=(1024,), num_classes=10, task="sequence-classification")
def hopfield_small(vocab_size: int = 256, num_classes: int = 10, max_len: int = 1024, per_token: bool = False,
                   causal: bool = False, dim: int = 64, depth: int = 2, heads: int = 4, dim_head: int = 16,
                   beta: float | None = None, update_steps: int = 1):
    """Token ids (B, N) -> logits, the `Hopfield` layer (beta, update_steps) as the self-attention of each of
    `depth` pre-norm layers: the `SequenceTransformer` of `archzoo bench tasks`."""
    return SequenceTransformer(vocab_size, num_classes, dim=dim, depth=depth, heads=heads, dim_head=dim_head,
                               max_len=max_len, attention="hopfield", causal=causal, per_token=per_token,
                               attention_kwargs=dict(beta=beta, update_steps=update_steps))


@register_model(paper="hopfield", input_size=(1024,), num_classes=2, task="sequence-classification")
def hopfield_mil(vocab_size: int = 256, num_classes: int = 2, max_len: int = 1024, dim: int = 64, heads: int = 4,
                 dim_head: int = 16, num_queries: int = 1, beta: float | None = None):
    """Bags of instance ids (B, N) -> logits: embedded instances pooled by `HopfieldPooling` (Sec. 3, Eq. 12). The
    bag is a set: no positions, so `max_len` (the largest bag accepted) costs nothing. For bags of feature vectors
    build `MILClassifier(in_features=D)`, as the claim does."""
    return MILClassifier(num_classes, vocab_size=vocab_size, dim=dim, heads=heads, dim_head=dim_head,
                         num_queries=num_queries, beta=beta, max_len=max_len)
