"""Expire-Span (Sukhbaatar, Ju, Poff, Roller, Szlam, Weston & Fan 2021, arXiv:2105.06548): "Not All Memories are
Created Equal: Learning to Forget by Expiring".

`ExpireSpanAttention`: predicted spans (Eq. 3), the soft expiration mask with ramp R (Eq. 4), renormalised
attention (Eq. 5), the span loss (Sec. 4.2) and a Transformer-XL cache from which expired memories are dropped;
`ExpireSpanTransformer` runs a long sequence block by block; the preset `expire_span_lm`; the claim. See README.md.
"""

from . import claims, model  # noqa: F401  (registers the claim and the preset)
from .expire_span import ExpireSpanAttention, expire_mask
from .model import ExpireSpanTransformer, expire_span_lm

__all__ = ["ExpireSpanAttention", "expire_mask", "ExpireSpanTransformer", "expire_span_lm"]
