"""One small sequence model for every attention: token embedding + positions + `Transformer` + head.

    task = load_dataset("listops", length=512, n_train=4000, n_test=500, seed=0)
    model = SequenceTransformer(task.vocab_size, task.num_classes, max_len=512, attention="linformer",
                                attention_kwargs=dict(seq_len=512, k=64), per_token=task.per_token)
    fit_and_eval(model, task, steps=500, batch_size=32)

The efficient-attention papers compare their attention with full attention by changing only `attention`
(and `attention_kwargs`), so every difference in a claim comes from the attention.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .checks import check_shape
from .classifier import Classifier
from .embeddings import LearnedPositionalEmbedding, SinusoidalPositionalEmbedding, TokenEmbedding
from .transformer import Transformer


class SequenceTransformer(Classifier, nn.Module):
    """Token ids (B, N) -> logits: per token (B, N, num_classes) or per sequence (B, num_classes).

    - `positional`: "learned" (a trained vector per position), "sinusoidal" (Vaswani et al. 2017, Sec. 3.5)
      or "none" (an attention that encodes position itself).
    - `causal=True` makes every layer a decoder layer (position t sees tokens <= t): language modelling,
      e.g. the duplication task.
    - `feedforward`: as in `Transformer` (a mixture of experts in Switch Transformer and GShard).
    - Sequence classification (`per_token=False`) mean-pools the final states over the real tokens
      (`mask`, True = real token; default: tokens != `pad_id` when `pad_id` is set, else all).
    - Token 0 is padding in every generated task of `archzoo.data`; `pad_id=None` (default) keeps every
      position, since the copy task's blanks are 0s that must be attended to.
    - Ids outside [0, vocab_size) raise a ValueError naming them (`core.TokenEmbedding`). A batch of 0 sequences
      gives an empty output; so do sequences of 0 tokens with per-token outputs, while a sequence classifier
      raises a ValueError for them (there is nothing to pool).
    - `core.Classifier`'s interface: `forward_head(forward_features(ids), mask=...)` is `forward(ids, mask)`.
    """

    def __init__(self, vocab_size: int, num_classes: int, *, dim: int = 64, depth: int = 2, heads: int = 4,
                 dim_head: int = 16, mlp_ratio: float = 4.0, max_len: int = 1024,
                 attention: str | Callable[..., nn.Module] = "full", attention_kwargs: dict | None = None,
                 causal: bool = False, per_token: bool = True, positional: str = "learned",
                 pad_id: int | None = None, dropout: float = 0.0, norm: str = "pre",
                 feedforward: str | Callable[[int], nn.Module] | list = "mlp"):
        super().__init__()
        if positional not in ("learned", "sinusoidal", "none"):
            raise ValueError(f"positional must be 'learned', 'sinusoidal' or 'none', got {positional!r}")
        self.vocab_size, self.num_classes, self.max_len = vocab_size, num_classes, max_len
        self.causal, self.per_token, self.pad_id = causal, per_token, pad_id
        self.embed = TokenEmbedding(vocab_size, dim)
        self.pos = {"learned": lambda: LearnedPositionalEmbedding(max_len, dim),
                    "sinusoidal": lambda: SinusoidalPositionalEmbedding(dim, max_len),
                    "none": nn.Identity}[positional]()
        self.transformer = Transformer(dim, depth, heads, dim_head, mlp_ratio, attention, attention_kwargs,
                                       feedforward, norm=norm, dropout=dropout)
        self.num_features = dim
        self.head = self.new_head(num_classes)

    def padding_mask(self, ids: Tensor, mask: Tensor | None = None) -> Tensor | None:
        """`mask`, else tokens != `pad_id` when it is set; None when nothing is padding."""
        if mask is None and self.pad_id is not None:
            mask = ids != self.pad_id
        if mask is not None and bool(mask.all()):
            mask = None                                       # no padding: let attentions take their fast path
        return mask

    def forward_features(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        n = check_shape(ids, "B N", name="ids")["N"]         # the ids themselves are checked by `embed`
        if n == 0 and not self.per_token:
            raise ValueError(f"ids: classifying a sequence needs at least one token, got shape {tuple(ids.shape)}")
        mask = self.padding_mask(ids, mask)
        h = self.pos(self.embed(ids))                         # (B, N, dim)
        return self.transformer(h, mask=mask, causal=self.causal)

    def forward_head(self, h: Tensor, pre_logits: bool = False, mask: Tensor | None = None) -> Tensor:  # (B, N, dim)
        if not self.per_token and mask is None:
            h = h.mean(1)                                     # (B, dim)
        elif not self.per_token:                              # mean over the real tokens
            w = mask.unsqueeze(-1).to(h.dtype)                # (B, N, 1)
            h = (h * w).sum(1) / w.sum(1).clamp_min(1.0)      # (B, dim)
        return h if pre_logits else self.head(h)              # (B, N, num_classes) or (B, num_classes)

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.forward_head(self.forward_features(ids, mask), mask=self.padding_mask(ids, mask))


def token_accuracy(model: nn.Module, dataset, *, batch_size: int = 256, ignore_index: int = -100) -> dict:
    """Accuracy over scored tokens and the fraction of sequences with every scored token right (percent)."""
    x, y = dataset.tensors
    was_training = model.training
    model.eval()
    correct = count = exact = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            pred = model(x[i:i + batch_size]).argmax(-1)
            t = y[i:i + batch_size]
            keep = t != ignore_index
            right = (pred == t) | ~keep
            correct += int(((pred == t) & keep).sum())
            count += int(keep.sum())
            exact += int(right.reshape(len(t), -1).all(1).sum())
    model.train(was_training)
    return {"accuracy": 100.0 * correct / max(count, 1), "sequence_accuracy": 100.0 * exact / len(x)}
