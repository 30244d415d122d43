"""The networks DFA trains, and where its feedback enters each of them.

- `DFAMLP`: the fully connected tanh networks of Nøkland (2016, Table 1), `dfa_mlp_7x240` (7 hidden layers of
  240, 537,850 parameters on 28x28 images) and `dfa_mlp_2x800` (1,276,810): flatten -> [Linear -> tanh] x L ->
  Linear. Every hidden block's output h_i = tanh(a_i) is a feedback point.
- `dfa_char_transformer`: a small causal character-level Transformer LM (`core.SequenceTransformer`, dim 128,
  4 post-norm blocks of 4 heads as in the authors' code, 834,407 parameters with CPython's 103 characters), the
  scaled-down language model of Launay et al. (2020, Sec. 3.4). Its feedback points are the outputs of the
  blocks, after their last LayerNorm ("macro" DFA: backpropagation inside a block, DFA between blocks); the
  embedding below block 1 learns from block 1's feedback, backpropagated through block 1.

`feedback_layers(model)` names, for either kind, the feedback points, the output module and the parameters of
each layer (the ones each point's feedback trains), for `DirectFeedbackAlignment` and `alignment_angles`.
"""

from __future__ import annotations

from torch import Tensor, nn

from ...core.checks import check_image
from ...core.classifier import Classifier
from ...core.sequence import SequenceTransformer
from ...registry import register_model


class DFAMLP(Classifier, nn.Module):
    """flatten -> [Linear -> tanh] x len(hidden) -> Linear (Nøkland 2016, Sec. 3, Table 1: tanh hidden units,
    PyTorch's default initialisation). `blocks[i]` computes h_{i+1} = tanh(W x + b) (Eq. 1)."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28,
                 hidden: tuple[int, ...] | list[int] = (240,) * 7):
        super().__init__()
        if num_classes < 0 or in_chans < 1 or img_size < 1 or not hidden or min(hidden) < 1:
            raise ValueError(f"need num_classes >= 0, in_chans >= 1, img_size >= 1 and hidden widths >= 1, "
                             f"got {num_classes}, {in_chans}, {img_size}, {tuple(hidden)}")
        self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, img_size
        self.default_input_size = (in_chans, img_size, img_size)
        widths = (in_chans * img_size * img_size, *hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(a, b), nn.Tanh()) for a, b in zip(widths, widths[1:]))
        self.num_features = hidden[-1]
        self.head = self.new_head(num_classes)

    def forward_features(self, x: Tensor) -> Tensor:                    # (B, C, H, W)
        h = check_image(x, self, C=self.in_chans, H=self.img_size, W=self.img_size).flatten(1)   # (B, C*H*W)
        for block in self.blocks:
            h = block(h)                                                # (B, width)
        return h

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:   # (B, num_features)
        return x if pre_logits else self.head(x)                        # (B, num_classes)


def feedback_layers(model: nn.Module) -> tuple[list[nn.Module], nn.Module, dict[str, list[nn.Parameter]]]:
    """(feedback points, output module, {layer name: parameters}) of a `DFAMLP` or a `SequenceTransformer`.

    The layers are the hidden ones, each trained by its point's feedback B_i e, then `output` (the head, with the
    Transformer's final norm), trained by its true gradient.
    """
    if isinstance(model, DFAMLP):
        points = list(model.blocks)
        groups = {f"layer{i + 1}": list(b.parameters()) for i, b in enumerate(model.blocks)}
        groups["output"] = list(model.head.parameters())
        return points, model.head, groups
    if isinstance(model, SequenceTransformer):
        points = list(model.transformer.blocks)
        groups = {"embedding": [*model.embed.parameters(), *model.pos.parameters()]}   # below block 1: its feedback
        groups.update({f"block{i + 1}": list(b.parameters()) for i, b in enumerate(model.transformer.blocks)})
        groups["output"] = [*model.transformer.norm.parameters(), *model.head.parameters()]   # no norm if post-norm
        return points, model.head, groups
    raise TypeError(f"feedback_layers knows DFAMLP and SequenceTransformer, got {type(model).__name__}")


MNIST_CFG = dict(input_size=(1, 28, 28), mean=(0.0,), std=(1.0,), num_classes=10, task="image-classification",
                 fixed_input_size=True)


@register_model(paper="dfa", **MNIST_CFG)
def dfa_mlp_7x240(**kwargs) -> DFAMLP:
    """Nøkland (2016) Table 1, MNIST "7x240 Tanh": 537,850 parameters."""
    return DFAMLP(hidden=(240,) * 7, **kwargs)


@register_model(paper="dfa", **MNIST_CFG)
def dfa_mlp_2x800(**kwargs) -> DFAMLP:
    """Nøkland (2016) Table 1, MNIST "2x800 Tanh": 1,276,810 parameters."""
    return DFAMLP(hidden=(800, 800), **kwargs)


@register_model(paper="dfa", input_size=(128,), num_classes=103, task="language-modeling")
def dfa_char_transformer(vocab_size: int = 103, num_classes: int | None = None, max_len: int = 128, dim: int = 128,
                         depth: int = 4, heads: int = 4, dim_head: int = 32, norm: str = "post",
                         **kwargs) -> SequenceTransformer:
    """A causal character model (B, N) -> (B, N, vocab_size); 103 is the number of characters in CPython's
    documentation (`load_text("pydoc")`). Other `SequenceTransformer` arguments pass through."""
    return SequenceTransformer(vocab_size, num_classes or vocab_size, dim=dim, depth=depth, heads=heads,
                               dim_head=dim_head, max_len=max_len, causal=True, per_token=True, norm=norm, **kwargs)
