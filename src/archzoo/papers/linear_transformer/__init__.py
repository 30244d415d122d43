"""Linear transformer (Katharopoulos, Vyas, Pappas & Fleuret 2020, arXiv:2006.16236): "Transformers are RNNs: Fast
Autoregressive Transformers with Linear Attention".

`LinearAttention` (attention "linear_transformer"): the elu + 1 feature map (Eq. 7), the non-causal form (Eq. 5-6),
the causal form with prefix sums in chunks (Eq. 8-12) and the recurrent step (Eq. 18-20); `IncrementalDecoder` and
`generate` run a causal `SequenceTransformer` token by token (a key-value cache for softmax layers); the preset
`linear_transformer_lm`; the claims. See README.md beside this file.
"""

from . import bench, claims, models  # noqa: F401  (registers the benchmark, the claims and the preset)
from .attention import (
    KeyValueSums,
    LinearAttention,
    LinearAttentionState,
    causal_linear_attention,
    elu_feature_map,
    linear_attention,
    recurrent_step,
)
from .generation import IncrementalDecoder, KVCacheSoftmaxAttention, RecurrentLinearAttention, generate
from .models import linear_transformer_lm

__all__ = ["KeyValueSums", "LinearAttention", "LinearAttentionState", "causal_linear_attention", "elu_feature_map",
           "linear_attention", "recurrent_step", "IncrementalDecoder", "KVCacheSoftmaxAttention",
           "RecurrentLinearAttention", "generate", "linear_transformer_lm"]
