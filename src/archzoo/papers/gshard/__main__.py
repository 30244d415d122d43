"""Expert parallelism under torchrun: every process holds 4 experts of a top-2 layer and routes its own group of
tokens; each prints its relative errors against one process holding every expert (all 0 up to float32 rounding).

    torchrun --nproc_per_node 2 -m archzoo.papers.gshard             # gloo; --nnodes N ... for N hosts
"""

from ...engine import distributed
from .parallel import compare_with_one_process

distributed.init_distributed("gloo")
try:
    errors = compare_with_one_process(dict(num_experts=4 * distributed.world_size(), dim=16, k=2, tokens=32, seed=0))
    print(f"rank {distributed.rank()} of {distributed.world_size()}: relative errors against one process: {errors}")
finally:
    distributed.cleanup()
