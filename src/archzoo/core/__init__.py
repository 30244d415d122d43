"""Blocks shared by three or more papers: shape checks, the attention protocol and full attention, the
Transformer with pluggable attention and feed-forward layers, MLPs, and patch and positional embeddings."""

from .attention import FullAttention, MapSelfAttention, attention_inputs
from .checks import check_shape
from .embeddings import LearnedPositionalEmbedding, PatchEmbed, SinusoidalPositionalEmbedding, sincos_2d
from .mlp import MLP, FeedForward, build_feedforward, register_feedforward
from .sequence import SequenceTransformer, token_accuracy
from .transformer import Transformer, TransformerBlock

__all__ = ["check_shape", "FullAttention", "MapSelfAttention", "attention_inputs", "Transformer", "TransformerBlock",
           "MLP", "FeedForward", "LearnedPositionalEmbedding", "SinusoidalPositionalEmbedding", "sincos_2d",
           "PatchEmbed", "build_feedforward", "register_feedforward", "SequenceTransformer", "token_accuracy"]
