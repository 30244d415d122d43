"""Neural Ordinary Differential Equations (Chen et al. 2018, arXiv:1806.07366): hidden states defined by an ODE and
computed by a black-box solver, with gradients by the adjoint method. The ODE block, the ODE-Net and ResNet of
Table 1, a latent ODE for irregularly sampled time series (Sec. 5) and a continuous normalizing flow (Sec. 4).
See README.md beside this file."""

from . import bench, claims  # noqa: F401  (registers the claims and the bench part; odenet the presets)
from .cnf import CNF, HyperPlanarDynamics, trace_exact, trace_hutchinson
from .latent_ode import LatentODE, RecognitionRNN, RNNForecaster
from .odeblock import CountedDynamics, ODEBlock
from .odenet import ConvDynamics, MNISTNet, odenet, odenet_mnist, resnet, resnet6_mnist

__all__ = ["CNF", "HyperPlanarDynamics", "trace_exact", "trace_hutchinson", "LatentODE", "RecognitionRNN",
           "RNNForecaster", "CountedDynamics", "ODEBlock", "ConvDynamics", "MNISTNet", "odenet", "odenet_mnist",
           "resnet", "resnet6_mnist"]
