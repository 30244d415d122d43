"""MetNet: A Neural Weather Model for Precipitation Forecasting (Sønderby et al. 2020, arXiv:2003.12140).

The generated radar (`radar.py`: rain cells advected by a wind, growing and decaying; the dataset "radar"), the
ConvLSTM (`convlstm.py`), MetNet and MetNet-lite with Axial-DeepLab's axial attention as the spatial aggregator
(`models.py`), the persistence and optical-flow extrapolation baselines (`baselines.py`) and the claim
(`claims.py`). See README.md beside this file.
"""

from . import claims, models, radar  # noqa: F401  (registers the presets, the dataset and the claim)
from .baselines import advect, displacement, extrapolation, persistence
from .convlstm import ConvLSTM, ConvLSTMCell
from .models import AxialAggregator, MetNet, SpatialDownsampler, forecast_loss, lead_time_one_hot, metnet, metnet_lite
from .radar import Cells, ForecastDataset, RadarData, load_radar, radar_sequences, render

__all__ = ["ConvLSTMCell", "ConvLSTM", "SpatialDownsampler", "AxialAggregator", "MetNet", "lead_time_one_hot",
           "forecast_loss", "metnet", "metnet_lite", "persistence", "extrapolation", "displacement", "advect",
           "Cells", "render", "radar_sequences", "ForecastDataset", "RadarData", "load_radar"]
