"""The synthesizer in `archzoo bench attention` and `archzoo bench tasks`: the dense synthesizer with l = n.

There is no public reference implementation of the Synthesizer to put beside ours (the authors' code lives in
Mesh TensorFlow), and synthesizers are quadratic in n (an N x l logit row per token), so `linear=False`.
"""

from ...engine.bench import register_attention_bench

register_attention_bench("synthesizer", kwargs=lambda n: dict(seq_len=n, synthesizer="dense"), reference=None,
                         ref_name=None, linear=False)
