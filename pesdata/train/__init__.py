"""Models trained on store versions (issue 4, in progress): the linear baseline and metrics."""

from ._fit import evaluate, predict_metrics, train
from .checkpoint import load_model, save_model
from .linear import LinearPotential
from .metrics import error_metrics

__all__ = [
    "LinearPotential",
    "error_metrics",
    "evaluate",
    "load_model",
    "predict_metrics",
    "save_model",
    "train",
]
