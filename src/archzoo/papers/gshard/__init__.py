"""GShard (Lepikhin et al. 2020, arXiv:2006.16668): "GShard: Scaling Giant Models with Conditional Computation and
Automatic Sharding".

The top-2 MoE layer is `archzoo.core.MoE(k=2, random_routing=True, group_size=S, capacity_factor=2.0)` (Alg. 1:
gating with the auxiliary loss, random routing of the second expert, groups, capacity 2S / E), with expert
parallelism over torch.distributed; this folder places it in every other block (`gshard_lm`), checks the sharded
layer against one process (`expert_parallel_errors`), registers the preset and the claims. See README.md.
"""

from . import bench, claims, models  # noqa: F401  (registers the benchmark, the claims and the preset)
from .models import gshard_lm, gshard_lm_small
from .parallel import expert_parallel_errors

__all__ = ["gshard_lm", "gshard_lm_small", "expert_parallel_errors"]
