"""Blocks shared by three or more papers: input checks (shapes, the dtype rule), the classifier interface, the
attention protocol and full attention, the Transformer with pluggable attention and feed-forward layers, MLPs,
the mixture-of-experts layer, token, patch and positional embeddings, and ResNet's blocks, stages and networks
with pluggable norm, convolution and activation layers."""

from .attention import FullAttention, MapSelfAttention, attention_inputs, padding_keep
from .checks import as_model_dtype, cast_floating, check_image, check_shape
from .classifier import Classifier, init_head
from .embeddings import (
    LearnedPositionalEmbedding,
    PatchEmbed,
    SinusoidalPositionalEmbedding,
    TokenEmbedding,
    check_token_ids,
    sincos_2d,
)
from .mlp import MLP, FeedForward, build_feedforward, register_feedforward
from .moe import Experts, MoE, Routing, TokenExchange, expert_capacity, load_balancing_loss, route, router_z_loss
from .resnet import BasicBlock, Bottleneck, CifarResNet, ResNet, ResNetBase, make_shortcut, make_stage, make_stages
from .sequence import SequenceTransformer, token_accuracy
from .transformer import Transformer, TransformerBlock

__all__ = ["check_shape", "check_image", "as_model_dtype", "cast_floating", "Classifier", "init_head",
           "FullAttention", "MapSelfAttention", "attention_inputs", "padding_keep", "Transformer", "TransformerBlock",
           "MLP",
           "FeedForward", "LearnedPositionalEmbedding", "SinusoidalPositionalEmbedding", "sincos_2d", "PatchEmbed",
           "TokenEmbedding", "check_token_ids", "build_feedforward", "register_feedforward", "SequenceTransformer",
           "token_accuracy", "BasicBlock", "Bottleneck", "CifarResNet", "ResNet", "ResNetBase", "make_shortcut",
           "make_stage", "make_stages", "MoE", "Experts", "Routing", "TokenExchange", "expert_capacity",
           "load_balancing_loss", "route", "router_z_loss"]
