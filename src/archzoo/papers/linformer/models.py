"""Linformer models (Wang et al. 2020, arXiv:2006.04768, Sec. 5): the RoBERTa-base shaped masked language models
of the paper's pretraining experiments, and a small sequence model for the generated long-range tasks.

All are `archzoo.core.SequenceTransformer`s with `attention="linformer"`: token ids (B, N) -> logits.
"""

from __future__ import annotations

from ...core.sequence import SequenceTransformer
from ...registry import register_model
from .attention import SHARING
from .projection import SequenceProjection

ROBERTA_VOCAB = 50265            # RoBERTa's byte-level BPE vocabulary, which the paper's pretraining uses


def linformer_kwargs(seq_len: int, k: int, sharing: str = "headwise") -> dict:
    """`attention_kwargs` for a Transformer of Linformer layers with `sharing` among "none", "headwise", "kv" and
    "layerwise" (Sec. 4); for "layerwise" it holds one `SequenceProjection` that every layer receives."""
    if sharing not in SHARING:
        raise ValueError(f"sharing must be one of {', '.join(SHARING)}, got {sharing!r}")
    if sharing == "layerwise":
        return dict(seq_len=seq_len, k=k, projection=SequenceProjection(seq_len, k))
    return dict(seq_len=seq_len, k=k, sharing=sharing)


def linformer_model(vocab_size: int, num_classes: int, *, seq_len: int, k: int, sharing: str = "headwise",
                    dim: int, depth: int, heads: int, dim_head: int, per_token: bool = True, norm: str = "pre",
                    tie_embeddings: bool = False, dropout: float = 0.0) -> SequenceTransformer:
    """A `SequenceTransformer` of Linformer layers with learned positions for `seq_len` tokens.

    `tie_embeddings` shares the output layer's weight with the token embedding (a masked language model whose
    classes are its tokens, as in RoBERTa)."""
    model = SequenceTransformer(vocab_size, num_classes, dim=dim, depth=depth, heads=heads, dim_head=dim_head,
                                max_len=seq_len, attention="linformer",
                                attention_kwargs=linformer_kwargs(seq_len, k, sharing), per_token=per_token,
                                norm=norm, dropout=dropout)
    if tie_embeddings:
        if vocab_size != num_classes or not per_token:
            raise ValueError(f"tie_embeddings needs a per-token model with num_classes == vocab_size, got "
                             f"vocab_size={vocab_size}, num_classes={num_classes}, per_token={per_token}")
        model.head.weight = model.embed.weight
    return model


def _base(seq_len: int, k: int, sharing: str, vocab_size: int, dropout: float, shape: dict) -> SequenceTransformer:
    """RoBERTa-base's shape (Liu et al. 2019; the paper's Sec. 5.1): 12 post-norm layers of width 768, 12 heads of
    64, feed-forward 3072, a tied masked-language-model head over the vocabulary. `shape` holds the presets'
    `dim`, `depth`, `heads` and `dim_head` (RoBERTa-base's by default; smaller for a quick test)."""
    return linformer_model(vocab_size, vocab_size, seq_len=seq_len, k=k, sharing=sharing, norm="post",
                           tie_embeddings=True, dropout=dropout, **shape)


MLM_512 = dict(input_size=(512,), num_classes=ROBERTA_VOCAB, task="masked-language-modeling")


@register_model(paper="linformer", **MLM_512)
def linformer_base_n512_k128(sharing: str = "headwise", vocab_size: int = ROBERTA_VOCAB, dropout: float = 0.1,
                             dim: int = 768, depth: int = 12, heads: int = 12, dim_head: int = 64):
    """The paper's main pretraining model (Fig. 3a, Table 2): n = 512, k = 128."""
    return _base(512, 128, sharing, vocab_size, dropout, dict(dim=dim, depth=depth, heads=heads, dim_head=dim_head))


@register_model(paper="linformer", **MLM_512)
def linformer_base_n512_k256(sharing: str = "headwise", vocab_size: int = ROBERTA_VOCAB, dropout: float = 0.1,
                             dim: int = 768, depth: int = 12, heads: int = 12, dim_head: int = 64):
    """n = 512, k = 256 (Fig. 3a, Table 2)."""
    return _base(512, 256, sharing, vocab_size, dropout, dict(dim=dim, depth=depth, heads=heads, dim_head=dim_head))


@register_model(paper="linformer", **dict(MLM_512, input_size=(1024,)))
def linformer_base_n1024_k256(sharing: str = "headwise", vocab_size: int = ROBERTA_VOCAB, dropout: float = 0.1,
                              dim: int = 768, depth: int = 12, heads: int = 12, dim_head: int = 64):
    """n = 1024, k = 256 (Fig. 3b, Table 2)."""
    return _base(1024, 256, sharing, vocab_size, dropout, dict(dim=dim, depth=depth, heads=heads, dim_head=dim_head))


@register_model(paper="linformer", input_size=(512,), num_classes=10, task="sequence-classification")
def linformer_tiny(vocab_size: int = 16, num_classes: int = 10, seq_len: int = 512, k: int = 64,
                   sharing: str = "headwise", per_token: bool = False):
    """The small model of the generated long-range tasks (`archzoo bench tasks` size: width 64, 2 pre-norm layers,
    4 heads of 16); defaults fit ListOps at length 512 (16 tokens, 10 classes)."""
    return linformer_model(vocab_size, num_classes, seq_len=seq_len, k=k, sharing=sharing, dim=64, depth=2, heads=4,
                           dim_head=16, per_token=per_token)
