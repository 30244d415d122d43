"""Supermasks in Superposition (Wortsman et al. 2020, arXiv:2006.14769): fixed random signed-constant weights,
one edge-popup supermask per task, the superposition of masks and one-shot task inference by the gradient of the
output entropy. The layers `SupermaskLinear` / `SupermaskConv2d` (and `supermask_` for any network), the
`supsup_fc1024` preset, the permuted-task generator and the claims. See README.md beside this file."""

from . import claims, inference, models, permuted, supermask  # noqa: F401  (registers the preset and claims)
from .inference import entropy_gradient, infer_task, output_entropy, superpose
from .models import SupSupMLP, supsup_fc1024
from .permuted import PermutedTasks
from .supermask import SupermaskConv2d, SupermaskLinear, set_task, signed_constant_, supermask_, task_scores, top_k_mask

__all__ = ["PermutedTasks", "SupSupMLP", "SupermaskConv2d", "SupermaskLinear", "entropy_gradient", "infer_task",
           "output_entropy", "set_task", "signed_constant_", "superpose", "supermask_", "supsup_fc1024",
           "task_scores", "top_k_mask"]
