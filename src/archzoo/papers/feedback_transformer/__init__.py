"""Feedback Transformer (Fan, Lavril, Grave, Joulin & Sukhbaatar 2020, arXiv:2002.09402): "Addressing Some
Limitations of Transformers with Feedback Memory".

`FeedbackTransformer`: memories as a learned softmax mix of all layers (Eq. 5), every layer attending to the past
memories, key/value projections shared by the layers (Sec. 3.1), a step function with a cache of memory keys and
values and the teacher-forced forward; the preset `feedback_transformer_tiny`. See README.md beside this file.
"""

from . import claims, models  # noqa: F401  (registers the claim and the preset)
from .feedback import FeedbackLayer, FeedbackState, FeedbackTransformer
from .models import feedback_transformer_tiny

__all__ = ["FeedbackLayer", "FeedbackState", "FeedbackTransformer", "feedback_transformer_tiny"]
