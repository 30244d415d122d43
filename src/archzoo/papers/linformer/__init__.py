"""Linformer: Self-Attention with Linear Complexity (Wang, Li, Khabsa, Fang, Ma 2020, arXiv:2006.04768).

The sequence projections E, F (`SequenceProjection`) with headwise, key-value and layerwise sharing, the attention
of Eq. 7 (`LinformerAttention`, registered as "linformer"), the spectrum analysis of Sec. 3 / Fig. 1, the
RoBERTa-base shaped presets, the benchmark entry and the three claims. See README.md beside this file.
"""

from . import attention, bench, claims, models, projection, spectrum  # noqa: F401  (registers everything)
from .attention import SHARING, LinformerAttention
from .models import linformer_kwargs, linformer_model
from .projection import SequenceProjection
from .spectrum import (
    attention_entropy,
    context_mapping_matrices,
    normalized_cumulative_singular_values,
    shuffle_rows,
    spectrum_energy,
)

__all__ = ["LinformerAttention", "SequenceProjection", "SHARING", "linformer_kwargs", "linformer_model",
           "attention_entropy", "context_mapping_matrices", "normalized_cumulative_singular_values", "shuffle_rows",
           "spectrum_energy"]
