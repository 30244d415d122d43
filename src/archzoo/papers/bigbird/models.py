"""`bigbird_small`: the course's small sequence model (`core.SequenceTransformer`) with BigBird attention."""

from __future__ import annotations

from ...core import SequenceTransformer
from ...registry import register_model


@register_model(paper="bigbird", input_size=(1024,), num_classes=10, task="sequence-classification")
def bigbird_small(vocab_size: int = 256, num_classes: int = 10, max_len: int = 1024, per_token: bool = False,
                  block_size: int = 32, num_random_blocks: int = 3, seed: int = 0, **kw) -> SequenceTransformer:
    """Token ids (B, N) -> logits, dim 64, depth 2, 4 heads of 16 (the model of `archzoo bench tasks`), every layer
    BigBird-ITC attention (blocks of `block_size`, w = 3, r = `num_random_blocks`, first/last block global).

    Layer l draws its random blocks from seed `seed + l`. `vocab_size` 256 covers every generated task;
    `per_token=True` for the copy task. Other keyword arguments go to `SequenceTransformer`.
    """
    model = SequenceTransformer(vocab_size, num_classes, max_len=max_len, per_token=per_token, attention="bigbird",
                                attention_kwargs=dict(block_size=block_size, num_random_blocks=num_random_blocks),
                                **{"dim": 64, "depth": 2, "heads": 4, "dim_head": 16, **kw})
    for layer, block in enumerate(model.transformer.blocks):
        block.attn.seed.fill_(seed + layer)
    return model
