"""The scDSEC network, its losses, parameters and the model class that trains it."""

from __future__ import annotations

from ._model import SCDSEC
from ._params import PRESETS, ModelParams, Params, TrainParams, get_preset

__all__ = ["PRESETS", "SCDSEC", "ModelParams", "Params", "TrainParams", "get_preset"]
