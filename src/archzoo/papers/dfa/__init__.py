"""Direct Feedback Alignment (Launay et al. 2020, arXiv:2006.12878; Nøkland 2016, arXiv:1609.01596): hidden layers
learn from a fixed random projection of the output error instead of the backpropagated gradient. The training
mode `DirectFeedbackAlignment` (forward hooks + one autograd function, a Trainer hook for its feedback
matrices), the alignment measurement, the MLP and Transformer presets and the claims. See README.md beside this
file."""

from . import alignment, claims, feedback, models  # noqa: F401  (registers the presets and the claims)
from .alignment import AlignmentMonitor, alignment_angles, angle_degrees
from .feedback import DirectFeedbackAlignment
from .models import DFAMLP, dfa_char_transformer, dfa_mlp_2x800, dfa_mlp_7x240, feedback_layers

__all__ = ["AlignmentMonitor", "DFAMLP", "DirectFeedbackAlignment", "alignment_angles", "angle_degrees",
           "dfa_char_transformer", "dfa_mlp_2x800", "dfa_mlp_7x240", "feedback_layers"]
