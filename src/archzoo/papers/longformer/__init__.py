"""Longformer: The Long-Document Transformer (Beltagy, Peters & Cohan 2020, arXiv:2004.05150).

Sliding-window, dilated and global attention with separate global projections (`LongformerAttention`,
registered as attention "longformer"), computed banded (`sliding_window_attention`) so the n x n matrix is
never built; the pretrained encoders `longformer_base` / `longformer_large`; the benchmark settings beside
Hugging Face's implementation; the claims. See README.md beside this file.
"""

from . import bench, claims  # noqa: F401  (registers the benchmark settings and the claims)
from .attention import LongformerAttention
from .model import LongformerEncoder, global_tokens, longformer_base, longformer_large
from .sliding_window import attention_pattern, band_mask, key_spans, sliding_window_attention

__all__ = ["LongformerAttention", "LongformerEncoder", "attention_pattern", "band_mask", "global_tokens",
           "key_spans", "longformer_base", "longformer_large", "sliding_window_attention"]
