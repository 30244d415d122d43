"""A small Performer sequence model for the generated long-range tasks (not a configuration of the paper, whose
protein and text models are far beyond a CPU budget): the `SequenceTransformer` of `archzoo bench tasks` with
FAVOR+ in every layer.

    archzoo train performer_small --data listops --data-set length=512
"""

from __future__ import annotations

from ...core.sequence import SequenceTransformer
from ...registry import register_model


@register_model(paper="performer", input_size=(1024,), num_classes=10, task="sequence-classification")
def performer_small(vocab_size: int = 256, num_classes: int = 10, max_len: int = 1024, per_token: bool = False,
                    causal: bool = False, dim: int = 64, depth: int = 2, heads: int = 4, dim_head: int = 16,
                    nb_features: int = 256, kernel: str = "softmax", feature_redraw_interval: int | None = 1000):
    """Token ids (B, N) -> logits, FAVOR+ attention (m = `nb_features` orthogonal features) in each of `depth`
    pre-norm layers. `vocab_size=256` covers every generated task's vocabulary; `causal=True` for language
    modelling (the duplication task), `per_token=True` for per-token targets (copy, duplication)."""
    return SequenceTransformer(vocab_size, num_classes, dim=dim, depth=depth, heads=heads, dim_head=dim_head,
                               max_len=max_len, attention="performer", causal=causal, per_token=per_token,
                               attention_kwargs=dict(nb_features=nb_features, kernel=kernel,
                                                     feature_redraw_interval=feature_redraw_interval))
